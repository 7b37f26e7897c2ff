// Security: this key's two-factor sign-in (enrollment with a QR code drawn in the page), what to do when an
// authenticator is lost, the tenant's security policy (edited with step-up), and the compliance report.
import { api, Problem, TOTP_HEADER } from "../app/api.js";
import { announce, btn, clearErrors, codeInput, dl, field, group, h, input } from "../app/dom.js";
import { dataTable, tableRegion } from "./cards.js";
import { formOpener, formRefused, listOf, section, signInAgain, when } from "./subject.js";
import { totpEnrollment } from "./totp.js";

const ROTATION = {
  "30_days": "Every 30 days",
  "60_days": "Every 60 days",
  "90_days": "Every 90 days",
  custom: "Custom",
  none: "No scheduled rotation",
};
const STATUS = {
  met: ["ok", "Met"],
  partial: ["warnb", "Partial"],
  not_met: ["bad", "Not met"],
  not_applicable: ["", "Not applicable"],
};
const cap = (s) => `${s[0].toUpperCase()}${s.slice(1)}`;
const list = (items) => (items.length ? items.join(", ") : "None");

export async function renderSecurity(page) {
  const ui = page("Security");
  const slots = [h("p", { text: "Loading…" })];
  ui.main.append(...slots);
  let session;
  let policy = null;
  let config;
  try {
    [session, config] = await Promise.all([
      api("GET", "/api/v1/auth/session"),
      api("GET", "/api/wizard/security-configurations"),
    ]);
    policy = await api("GET", "/api/v1/security-policy").catch((err) => {
      if (err.status === 404) return null;
      throw err;
    });
  } catch (err) {
    slots[0].remove();
    return ui.fail(err);
  }
  slots[0].remove();
  const rerender = () => renderSecurity(page);
  ui.main.append(
    twoFactorSection(ui, session, policy, rerender),
    recoverySection(),
    policySection(ui, session, policy, config, rerender),
    complianceSection(ui, config),
  );
}

function twoFactorSection(ui, session, policy, rerender) {
  const required = policy?.require_2fa ?? session.requires_2fa;
  const status = session.totp_enrolled
    ? h("p", { class: "okline", "data-totp": "enrolled", text: "Enrolled: this key signs in with a code." })
    : h("p", {
        class: required ? "bad" : "",
        "data-totp": "not-enrolled",
        text: required
          ? "Not enrolled, and this tenant requires it: enroll now, or the next sign-in will ask you to."
          : "Not enrolled. Recommended for every person who signs in; machine keys do without.",
      });
  const body = section(
    "Two-factor sign-in",
    h("p", { class: "hint", text: `Signed in with key ${session.key_id}.` }),
    status,
  );
  if (session.totp_enrolled) return body;
  const { panel, start } = totpEnrollment({
    busy: ui.busy,
    showProblem: (text) => ui.fail(new Problem(0, { detail: text })),
    onConfirmed: rerender,
  });
  const begin = btn("Enroll two-factor sign-in", () =>
    ui.busy(begin, async () => {
      if (await start()) begin.remove();
    }),
  );
  begin.classList.add("primary");
  body.append(h("p", { class: "actions" }, begin), panel);
  return body;
}

function recoverySection() {
  return section(
    "If an authenticator is lost",
    h(
      "ul",
      {},
      h("li", {
        text: "Prepare now: keep a second admin key (at the enhanced and enterprise levels every admin key comes with a backup key), enrolled on a different device and stored offline.",
      }),
      h("li", {
        text: "Lost device: sign in with that other admin key, create a replacement admin key on the Keys page, and revoke the lost one. A second factor belongs to its key, so revoking the key retires the lost factor with it; the new key enrolls at its first sign-in.",
      }),
      h("li", {
        text: "No other admin key: nobody can switch a key's second factor off, not the operator either (a reset would be the attacker's way round it). Ask the operator who runs this Keywarden: their bootstrap token creates tenants, so recovery means a new tenant (an encrypted export made while you could still sign in carries credentials, policy, channels and rules into it).",
      }),
      h("li", {
        text: "Too many wrong codes lock a key's two-factor sign-in for 15 minutes, doubling with each further lockout; wait it out rather than guessing.",
      }),
    ),
  );
}

function policyView(policy, config) {
  if (!policy)
    return h("p", {
      "data-policy": "none",
      text: "No security policy yet. The setup wizard sets one; you can also set it here.",
    });
  return dl([
    ["Security level", cap(policy.security_level)],
    ["Environment", cap(policy.environment)],
    [
      "Rotation",
      policy.rotation_policy === "custom"
        ? `Every ${policy.rotation_days} days`
        : (ROTATION[policy.rotation_policy] ?? policy.rotation_policy),
    ],
    ["IP allowlist", list(policy.ip_allowlist)],
    ["Country allowlist", list(policy.country_allowlist)],
    ["Two-factor sign-in", policy.require_2fa ? "Required" : "Optional"],
    [
      "Compliance standards",
      list(policy.compliance.map((id) => config.compliance_standards.find((s) => s.id === id)?.name ?? id)),
    ],
    ["Last changed", `${when(policy.updated_at)}${policy.wizard_id ? " (by the setup wizard)" : ""}`],
  ]);
}

function policySection(ui, session, policy, config, rerender) {
  const view = h("div", { "data-policy-view": "" }, policyView(policy, config));
  const edit = formOpener(policy ? "Edit policy" : "Set a policy", (close) =>
    policyForm(ui, session, policy, config, { saved: rerender, cancel: close }),
  );
  return section(
    "Security policy",
    h("p", {
      class: "hint",
      text: "The tenant's floor for every key and credential created from now on, its allowlists and its 2FA rule. Changing it is a step-up: within 5 minutes of signing in, with a current code once 2FA applies.",
    }),
    view,
    h("p", { class: "actions" }, edit),
  );
}

function policyForm(ui, session, policy, config, { saved, cancel }) {
  const v = policy ?? {
    security_level: "enhanced",
    environment: "production",
    rotation_policy: "90_days",
    ip_allowlist: [],
    country_allowlist: [],
    require_2fa: false,
    compliance: [],
  };
  const select = (options, value) =>
    h(
      "select",
      {},
      options.map(([id, text]) => h("option", { value: id, text, selected: id === value })),
    );
  const level = select(
    config.security_levels.map((l) => [l.id, l.name]),
    v.security_level,
  );
  const environment = select(
    config.environments.map((e) => [e, cap(e)]),
    v.environment,
  );
  const rotation = select(
    config.rotation_policies.map((p) => [p.id, ROTATION[p.id] ?? p.id]),
    v.rotation_policy,
  );
  const days = input({
    type: "number",
    min: 1,
    max: 365,
    value: v.rotation_policy === "custom" ? v.rotation_days : 30,
  });
  const daysField = field("Rotate every (days)", days, { path: "custom_rotation_days" });
  const ip = h("textarea", { rows: 3, spellcheck: "false" });
  ip.value = v.ip_allowlist.join("\n");
  const country = input({ value: v.country_allowlist.join(", ") });
  const twofa = input({ type: "checkbox", checked: v.require_2fa });
  const levelHint = h("p", { class: "hint", "aria-live": "polite" });
  const standards = config.compliance_standards.map((s) => {
    const box = input({ type: "checkbox", value: s.id, checked: v.compliance.includes(s.id) });
    return [box, field(s.name, box)];
  });
  const needsCode = session.totp_enrolled || Boolean(policy?.require_2fa);
  const code = codeInput({ name: "step-up-code" });
  const stepUp = h("div", { class: "alert", hidden: true });
  const sync = () => {
    const l = config.security_levels.find((x) => x.id === level.value);
    daysField.hidden = rotation.value !== "custom";
    twofa.disabled = l.requires_2fa;
    if (l.requires_2fa) twofa.checked = true;
    levelHint.textContent = `${l.name}: rotation at least every ${l.max_rotation_days} days${l.requires_2fa ? ", 2FA required" : ""}${l.requires_ip_restriction ? ", an IP allowlist required" : ""}.`;
  };
  const save = h("button", { class: "primary", text: "Save policy" });
  const form = h(
    "form",
    {
      noValidate: true,
      "aria-label": "Edit the security policy",
      onchange: sync,
      onsubmit: (e) => {
        e.preventDefault();
        const body = {
          security_level: level.value,
          environment: environment.value,
          rotation_policy: rotation.value,
          ip_allowlist: listOf(ip.value),
          country_allowlist: listOf(country.value.toUpperCase()),
          require_2fa: twofa.checked,
          compliance: standards.filter(([box]) => box.checked).map(([box]) => box.value),
        };
        if (body.rotation_policy === "custom") body.custom_rotation_days = Number(days.value);
        const headers = code.value.trim() ? { [TOTP_HEADER]: code.value.trim() } : {};
        ui.busy(save, async () => {
          clearErrors(form);
          stepUp.hidden = true;
          try {
            await api("PUT", "/api/v1/security-policy", body, headers);
          } catch (err) {
            return refused(err);
          }
          announce("Security policy saved.");
          await saved();
        });
      },
    },
    h("div", { class: "grid2" }, [
      field("Security level", level, { path: "security_level" }),
      field("Environment", environment, { path: "environment" }),
      field("Rotation policy", rotation, { path: "rotation_policy" }),
      daysField,
    ]),
    levelHint,
    field("IP allowlist", ip, {
      path: "ip_allowlist",
      hint: "IPv4/IPv6 addresses or CIDR ranges, one per line; must include where you are now. Empty: no restriction.",
    }),
    field("Country allowlist", country, {
      path: "country_allowlist",
      hint: "Two-letter country codes (ISO 3166-1), separated by commas. Empty: any country.",
    }),
    field("Require two-factor sign-in (TOTP) for admins", twofa, {
      path: "require_2fa",
      hint: session.totp_enrolled
        ? "Keys that have not enrolled must enroll at their next sign-in."
        : "This key has not enrolled: requiring 2FA means enrolling at your next sign-in (or above, now).",
    }),
    group(
      "Compliance standards",
      "compliance",
      standards.map(([, f]) => f),
    ),
    needsCode &&
      field("Two-factor code", code, {
        path: "totp",
        hint: "A current code from your authenticator app (step-up).",
      }),
    stepUp,
    h("p", { class: "actions" }, save, btn("Cancel", cancel)),
  );

  function refused(err) {
    const totpError = err.errors?.find((x) => x.path === "totp");
    // The step-up window (5 minutes after sign-in) has passed: sign in again, then come back here.
    if (!totpError && signInAgain(stepUp, err)) return ui.fail(new Problem(0, { detail: err.message }));
    // A code is needed after all (2FA applies now): the field appears to take it.
    if (totpError && !form.contains(code))
      form.insertBefore(field("Two-factor code", code, { path: "totp" }), stepUp);
    formRefused(ui, form, err);
  }
  sync();
  return form;
}

function complianceSection(ui, config) {
  const standard = h(
    "select",
    {},
    config.compliance_standards.map((s) => h("option", { value: s.id, text: s.name })),
  );
  const out = h("div", { "aria-live": "polite" });
  const printable = h("a", { target: "_blank", rel: "noopener", text: "Printable report" });
  const link = () => {
    printable.href = `/api/v1/compliance/report?standard=${encodeURIComponent(standard.value)}&format=html`;
  };
  standard.addEventListener("change", link);
  link();
  const show = h("button", { class: "primary", text: "Show report" });
  const form = h(
    "form",
    {
      noValidate: true,
      "aria-label": "Compliance report",
      onsubmit: (e) => {
        e.preventDefault();
        ui.busy(show, async () => {
          out.replaceChildren(h("p", { text: "Computing…" }));
          try {
            const report = await api(
              "GET",
              `/api/v1/compliance/report?standard=${encodeURIComponent(standard.value)}`,
            );
            out.replaceChildren(reportTable(report));
          } catch (err) {
            out.replaceChildren();
            ui.fail(err);
          }
        });
      },
    },
    h("div", { class: "inline-form" }, field("Standard", standard), h("p", { class: "actions" }, show)),
  );
  return section(
    "Compliance report",
    h("p", {
      class: "hint",
      text: "Each control of a standard, computed now from this tenant's live state, with its evidence. A statement of Keywarden's part, not a certification or an audit.",
    }),
    form,
    h("p", {}, printable),
    out,
  );
}

function reportTable(report) {
  const counts = Object.entries(report.summary)
    .filter(([, n]) => n > 0)
    .map(([status, n]) => `${n} ${STATUS[status]?.[1].toLowerCase() ?? status}`)
    .join(", ");
  return h(
    "div",
    { "data-report": report.standard },
    h("p", { text: `${report.name}, generated ${when(report.generated_at)}: ${counts}.` }),
    tableRegion(
      "Compliance controls table",
      dataTable(
        `${report.name} controls`,
        ["Control", "Status", "Evidence"],
        report.controls.map((control) =>
          h(
            "tr",
            {},
            h("th", { scope: "row", "data-control": control.id, text: control.title }),
            h(
              "td",
              {},
              h("span", {
                class: `badge ${STATUS[control.status]?.[0] ?? ""}`,
                text: STATUS[control.status]?.[1] ?? control.status,
              }),
            ),
            h(
              "td",
              {},
              h(
                "ul",
                { class: "evidence" },
                control.evidence.map((e) =>
                  h("li", {}, h("span", { class: "src", text: e.source }), `: ${e.summary}`),
                ),
              ),
            ),
          ),
        ),
        "report cards",
      ),
    ),
  );
}
