// Step 2: security level, environment, rotation within the level's ceiling, access controls, compliance.
import { add, btn, dl, field, group, h, input } from "../dom.js";

const POLICY = {
  "30_days": "Every 30 days",
  "60_days": "Every 60 days",
  "90_days": "Every 90 days",
  custom: "Custom",
  none: "No scheduled rotation",
};
const split = (text) => text.split(/[\s,]+/).filter(Boolean);
const cap = (s) => `${s[0].toUpperCase()}${s.slice(1)}`;
const choice = (type, name, value, label, checked) => field(label, input({ type, name, value, checked }));

export const levelFacts = (l) => [
  ["Key strength", `${l.key_entropy_bits}-bit keys`],
  ["Backup key", l.backup_key ? "Issued with every key" : "No"],
  ["Rotation", `At least every ${l.max_rotation_days} days`],
  ["Two-factor sign-in", l.requires_2fa ? "Required" : "Optional"],
  ["IP allowlist", l.requires_ip_restriction ? "Required" : "Optional"],
  ["Test/live mix-ups", l.environment_mismatch === "refuse" ? "Refused" : "Warned about"],
  ["Audit log kept", `${l.audit_retention_days} days`],
];

// A control's status (src/compliance/controls.ts): badge class and label.
const STATUS = {
  met: ["ok", "Met"],
  partial: ["warnb", "Partial"],
  not_met: ["bad", "Not met"],
  not_applicable: ["", "Not applicable"],
};

/** The state's `compliance_checklist`: which saved settings meet which control. Not a certification. */
export function checklist(state, config) {
  const items = state.compliance_checklist || [];
  if (!items.length) return null;
  const std = (id) => config.compliance_standards.find((s) => s.id === id)?.name || id;
  const row = (i) =>
    h(
      "tr",
      {},
      [std(i.standard), i.control].map((text) => h("td", { text })),
      h(
        "td",
        {},
        h("span", {
          class: `badge ${STATUS[i.status]?.[0] || "bad"}`,
          text: STATUS[i.status]?.[1] || "Not met",
        }),
      ),
      h("td", { text: i.why || "" }),
    );
  return h(
    "section",
    { class: "card", "aria-label": "Compliance checklist" },
    h("h2", { text: "Compliance checklist" }),
    h("p", {
      class: "hint",
      text: `Which saved settings meet each chosen standard's relevant controls (${items.filter((i) => i.met).length} of ${items.length} met). A checklist, not a certification or an audit.`,
    }),
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        {},
        h(
          "tr",
          {},
          ["Standard", "Control", "Status", "Why"].map((t) => h("th", { scope: "col", text: t })),
        ),
        items.map(row),
      ),
    ),
  );
}

export function render(body, ctx) {
  const cfg = ctx.config;
  const v = {
    security_level: "enhanced",
    environment: "development",
    rotation_policy: "90_days",
    ...ctx.state.steps.security,
  };
  const level = () => cfg.security_levels.find((l) => l.id === form.level.value);
  const levels = group(
    "Security level",
    "security_level",
    h(
      "div",
      { class: "grid3" },
      cfg.security_levels.map((l) =>
        h(
          "div",
          { class: "level" },
          choice("radio", "level", l.id, l.name, l.id === v.security_level),
          h("p", { class: "hint", text: l.description }),
          dl(levelFacts(l)),
        ),
      ),
    ),
  );
  const env = group(
    "Environment",
    "environment",
    cfg.environments.map((e) => choice("radio", "environment", e, cap(e), e === v.environment)),
  );
  const days = input({ type: "number", min: 1, value: v.custom_rotation_days || 30 });
  const daysField = field("Rotate every (days)", days, { path: "custom_rotation_days" });
  const rotHint = h("p", { class: "hint" });
  const rotation = group(
    "Rotation policy",
    "rotation_policy",
    cfg.rotation_policies.map((p) =>
      choice("radio", "rotation", p.id, POLICY[p.id] || p.id, p.id === v.rotation_policy),
    ),
    daysField,
    rotHint,
  );
  const ip = h("textarea", { rows: 3, spellcheck: "false" });
  ip.value = (v.ip_allowlist || []).join("\n");
  const ipField = field("IP allowlist", ip, {
    path: "ip_allowlist",
    hint: "IPv4/IPv6 addresses or CIDR ranges, one per line. Keys are refused from anywhere else. Empty: no restriction.",
  });
  const country = input({ value: (v.country_allowlist || []).join(", ") });
  const twofa = input({ type: "checkbox", checked: v.require_2fa });
  const twofaField = field("Require two-factor sign-in (TOTP) for admins", twofa, {
    path: "require_2fa",
    hint: " ",
  });
  const twofaHint = twofaField.querySelector(".hint");
  const compliance = group(
    "Compliance standards",
    "compliance",
    cfg.compliance_standards.map((s) =>
      choice("checkbox", "compliance", s.id, `${s.name} — ${s.description}`, v.compliance?.includes(s.id)),
    ),
  );

  function sync() {
    const l = level();
    const radios = [...rotation.querySelectorAll("input[type=radio]")];
    for (const r of radios) {
      const days = cfg.rotation_policies.find((p) => p.id === r.value).days;
      r.disabled = days > l.max_rotation_days || (r.value === "none" && l.id !== "basic");
    }
    // A policy the new level does not allow falls back to the longest one it does.
    if (form.rotation.value === "" || radios.find((r) => r.checked)?.disabled) {
      radios.findLast((r) => !r.disabled && r.value.endsWith("_days")).checked = true;
    }
    days.max = l.max_rotation_days;
    daysField.hidden = form.rotation.value !== "custom";
    rotHint.textContent = `${l.name} rotates at least every ${l.max_rotation_days} days${l.id === "basic" ? "" : "; “none” is not available"}.`;
    twofa.disabled = l.requires_2fa;
    if (l.requires_2fa) twofa.checked = true;
    twofaHint.textContent = l.requires_2fa ? `Required at ${l.name}.` : "Optional at this level.";
    ipField.classList.toggle("req", l.requires_ip_restriction);
  }

  const next = h("button", { class: "primary", text: "Save and continue to keys" });
  const form = h("form", {
    noValidate: true,
    onchange: sync,
    onsubmit: (e) => {
      e.preventDefault();
      const data = {
        security_level: form.level.value,
        environment: form.environment.value,
        rotation_policy: form.rotation.value,
        ip_allowlist: split(ip.value),
        country_allowlist: split(country.value.toUpperCase()),
        require_2fa: twofa.checked,
        compliance: [...form.querySelectorAll("[name=compliance]:checked")].map((c) => c.value),
      };
      if (data.rotation_policy === "custom") data.custom_rotation_days = Number(days.value);
      ctx.busy(next, () => ctx.send("PUT", "/steps/security", data, form));
    },
  });
  add(form, [
    levels,
    h("div", { class: "grid2" }, env, rotation),
    group(
      "Access controls",
      null,
      ipField,
      field("Country allowlist", country, {
        path: "country_allowlist",
        hint: "Two-letter country codes (ISO 3166-1), separated by commas. Empty: any country.",
      }),
      twofaField,
    ),
    compliance,
    h(
      "p",
      { class: "actions" },
      btn("Back", () => ctx.navigate("services")),
      next,
    ),
  ]);
  add(body, [form, checklist(ctx.state, cfg)]);
  sync();
}
