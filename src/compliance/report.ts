import type { Bindings } from "../env";
import { COMPLIANCE_STANDARDS } from "../wizard/security-levels";
import { type ControlResult, type ControlStatus, evaluateControls, type Standard } from "./controls";
import { liveFacts } from "./facts";

export interface ComplianceReport {
  standard: Standard;
  name: string;
  generated_at: string;
  summary: Record<ControlStatus, number>;
  controls: ControlResult[];
}

/** The report of one standard for one tenant, from what is true at `now`. */
export async function complianceReport(
  env: Bindings,
  tenantId: string,
  standard: Standard,
  now: number,
): Promise<ComplianceReport> {
  const controls = evaluateControls(standard, await liveFacts(env, tenantId, now));
  const summary: Record<ControlStatus, number> = { met: 0, not_met: 0, partial: 0, not_applicable: 0 };
  for (const control of controls) summary[control.status] += 1;
  return {
    standard,
    name: COMPLIANCE_STANDARDS.find((s) => s.id === standard)?.name ?? standard,
    generated_at: new Date(now).toISOString(),
    summary,
    controls,
  };
}

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};
/** Every interpolated value is escaped (OWASP XSS Prevention CS, rule 1: HTML entity encoding). */
const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (ch) => ESCAPES[ch] as string);

const LABEL: Record<ControlStatus, string> = {
  met: "Met",
  not_met: "Not met",
  partial: "Partial",
  not_applicable: "Not applicable",
};

/**
 * A printable page of the report: no script, no external resource, styles inline (the app's CSP allows
 * neither inline script nor foreign origins, and a printout needs neither).
 */
export function reportHtml(report: ComplianceReport, tenantName: string): string {
  const rows = report.controls
    .map(
      (control) => `<tr class="${control.status}">
  <td>${escapeHtml(control.title)}</td>
  <td><strong>${LABEL[control.status]}</strong></td>
  <td><ul>${control.evidence.map((e) => `<li>${escapeHtml(e.summary)} <small>(${escapeHtml(e.source)})</small></li>`).join("")}</ul></td>
</tr>`,
    )
    .join("\n");
  const counts = (Object.keys(LABEL) as ControlStatus[])
    .map((status) => `${LABEL[status]}: ${report.summary[status]}`)
    .join(" · ");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(report.name)} report: ${escapeHtml(tenantName)}</title>
</head>
<body>
<h1>${escapeHtml(report.name)} controls: ${escapeHtml(tenantName)}</h1>
<p>Generated ${escapeHtml(report.generated_at)} from the tenant's live state. ${escapeHtml(counts)}.</p>
<p>What Keywarden does for each control, with its evidence. A checklist, not a certification or an audit.</p>
<table border="1" cellpadding="6" cellspacing="0">
<thead><tr><th scope="col">Control</th><th scope="col">Status</th><th scope="col">Evidence</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
</body>
</html>
`;
}
