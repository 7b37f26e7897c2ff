import {
  type ControlStatus,
  type Evidence,
  evaluateControls,
  STANDARDS,
  type Standard,
} from "../compliance/controls";
import { plannedFacts } from "../compliance/facts";
import type { SecurityStep } from "./steps";

export interface ChecklistItem {
  standard: string;
  id: string;
  control: string;
  status: ControlStatus;
  /** status === "met": kept for clients that only show met / not met. */
  met: boolean;
  why: string;
  evidence: Evidence[];
}

/**
 * The wizard's checklist: the live report's controls (src/compliance/controls.ts) judged on the settings the
 * commit would put in force, with nothing observed yet. The same code as the report, so the checklist says
 * "partial" where the settings alone do not make a control happen (e.g. provider credentials that no
 * rotation is configured for) instead of claiming it. Not a certification.
 */
export function complianceChecklist(
  security: SecurityStep,
  channels: number,
  services: number,
): ChecklistItem[] {
  const facts = plannedFacts(security, channels, services);
  return security.compliance
    .filter((standard): standard is Standard => (STANDARDS as string[]).includes(standard))
    .flatMap((standard) =>
      evaluateControls(standard, facts).map((control) => ({
        standard,
        id: control.id,
        control: control.title,
        status: control.status,
        met: control.status === "met",
        why: control.evidence.map((e) => e.summary).join("; "),
        evidence: control.evidence,
      })),
    );
}
