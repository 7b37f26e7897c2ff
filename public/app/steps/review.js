// Step 6: everything on one page, the commit, and afterwards what was created.
import { add, btn, clear, clearErrors, dl, field as formField, h, input, placeErrors, ul } from "../dom.js";
import { shownOnce } from "../secrets.js";
import { checklist } from "./security.js";
import { categoryName } from "./services.js";

// Values shown once: new webhook signing secrets carried from step 5, or key plaintext from the commit.
let once = null;
export const leave = () => {
  once = null;
};
export const carry = (list) => {
  once = list;
};
const words = (s) => String(s ?? "").replaceAll("_", " ");
const items = (list, fn) => ul(list.map((x) => h("li", {}, fn(x))));

// What the commit will do to the tenant's channels, rules and policy (GET /wizard/{id}/changes): the
// commit reconciles by name, so a second wizard updates what exists instead of adding copies.
const CHANGE = { added: "Added", changed: "Changed", removed: "Removed", unchanged: "Unchanged" };
function changes(ctx) {
  const box = h(
    "div",
    { "aria-live": "polite" },
    h("p", { class: "hint", text: "Comparing with what exists…" }),
  );
  const line = (c) =>
    `${CHANGE[c.change]}: ${c.name} (${words(c.kind)})${c.fields.length ? ` — ${c.fields.map(words).join(", ")}` : ""}`;
  ctx
    .api("GET", ctx.path("/changes"))
    .then((d) =>
      clear(
        box,
        h("h3", { text: "Channels" }),
        d.channels.length ? items(d.channels, line) : h("p", { text: "None before or after." }),
        h("h3", { text: "Rules" }),
        d.rules.length ? items(d.rules, line) : h("p", { text: "None before or after." }),
        h("p", {
          text: `Security policy: ${CHANGE[d.policy.change].toLowerCase()}${d.policy.fields.length ? ` (${d.policy.fields.map(words).join(", ")})` : ""}.`,
        }),
      ),
    )
    .catch((err) =>
      clear(box, h("p", { class: "bad", text: `Could not compare: ${err.detail || err.message || err}` })),
    );
  return h(
    "section",
    { class: "card", "aria-label": "Changes at commit" },
    h("h2", { text: "Changes at commit" }),
    h("p", {
      class: "hint",
      text: "Channels are matched by name. Channels and wizard rules not listed in step 5 are removed.",
    }),
    box,
  );
}

export function render(body, ctx) {
  const s = ctx.state;
  const { services, security: sec, keys, testing, monitoring } = s.steps;
  const ids = services.service_ids;
  const done = s.status === "committed";
  const part = (step, title, ...content) =>
    h(
      "section",
      { class: "card", "aria-label": title },
      h(
        "div",
        { class: "head" },
        h("h2", { text: title }),
        !done && btn(`Edit ${title.toLowerCase()}`, () => ctx.navigate(step)),
      ),
      content,
    );
  const std = (id) => ctx.config.compliance_standards.find((c) => c.id === id)?.name || id;
  const field = (id, f) => ctx.service(id)?.fields.find((x) => x.name === f)?.label || f;
  // The commit replaces the tenant's security policy: a step-up, which needs a current code once the
  // signed-in key has enrolled 2FA.
  const totp = input({ name: "totp", inputMode: "numeric", autocomplete: "one-time-code", maxLength: 6 });
  const stepUp = formField("Two-factor code", totp, {
    path: "totp",
    hint: "Committing replaces your tenant's security policy. If 2FA is enrolled for your key, enter a current code.",
  });
  const commit = btn(
    "Commit setup",
    () =>
      ctx.busy(commit, async () => {
        clearErrors(stepUp);
        const code = totp.value.trim();
        let res;
        try {
          res = await ctx.api("POST", ctx.path("/commit"), code ? { totp: code } : {});
        } catch (err) {
          // A missing or wrong code is a 401 too, but the session is fine: say so at the field.
          if (err.status === 401 && err.errors.some((e) => e.path === "totp")) {
            placeErrors(stepUp, err.errors);
            ctx.announce(err.errors.find((e) => e.path === "totp").message);
            totp.focus();
            return;
          }
          return ctx.fail(err);
        }
        totp.value = "";
        once = Object.entries(res.generated || {}).flatMap(([id, g]) => [
          { label: `${ctx.name(id)} key`, value: g.key },
          ...(g.backup_key ? [{ label: `${ctx.name(id)} backup key`, value: g.backup_key }] : []),
        ]);
        ctx.update(res.state, true);
        document.getElementById("done")?.focus();
        ctx.announce("Setup committed.");
      }),
    "primary",
  );
  const created = s.commit?.created || {};
  const count = (list = [], one) => [
    `${list.length} ${one}${list.length === 1 ? "" : "s"} `,
    h("code", { class: "ids", text: list.join(", ") }),
  ];
  add(body, [
    done
      ? h(
          "section",
          { class: "card done", "aria-labelledby": "done" },
          h("h2", { id: "done", tabindex: "-1", text: "Setup committed" }),
          h("p", {
            text: `Committed ${new Date(s.commit.committed_at).toLocaleString()}. The wizard's stored secrets have been wiped.`,
          }),
          ul([
            h("li", {}, count(created.keys, "API key")),
            h("li", {}, count(created.credentials, "credential")),
            h("li", {}, count(created.channels, "alert channel")),
            h("li", {}, count(created.rules, "alert rule")),
            h("li", {
              text: created.policy ? "The security policy is in force." : "No security policy was written.",
            }),
          ]),
          shownOnce(once),
          h(
            "p",
            { class: "actions" },
            h("a", { href: "/console/#/keys", text: "Open the console" }),
            h("a", { href: "/docs/", text: "API reference" }),
            btn("Start a new wizard", ctx.startNew),
          ),
        )
      : [
          h("p", {
            text: "Check everything once more. Nothing is written until you commit, and then all of it at once.",
          }),
          shownOnce(once),
        ],
    part(
      "services",
      "Services",
      items(ids, (id) => `${ctx.name(id)} (${categoryName(ctx.service(id)?.category || "")})`),
    ),
    part(
      "security",
      "Security",
      dl([
        ["Level", ctx.config.security_levels.find((l) => l.id === sec.security_level)?.name],
        ["Environment", sec.environment],
        [
          "Rotation",
          sec.rotation_policy === "custom"
            ? `Every ${sec.custom_rotation_days} days`
            : words(sec.rotation_policy),
        ],
        ["IP allowlist", sec.ip_allowlist.join(", ") || "Any address"],
        ["Country allowlist", sec.country_allowlist.join(", ") || "Any country"],
        ["Two-factor sign-in", sec.require_2fa ? "Required" : "Not required"],
        ["Compliance", sec.compliance.map(std).join(", ") || "None chosen"],
      ]),
    ),
    checklist(s, ctx.config),
    !done && changes(ctx),
    part(
      "keys",
      "Keys and credentials",
      items(ids, (id) => {
        const issued = keys?.issued_keys?.[id];
        return [
          h("strong", { text: `${ctx.name(id)}: ` }),
          Object.entries(keys?.services?.[id]?.fields || {}).map(([f, v]) => [
            `${field(id, f)} `,
            h("code", { text: v }),
            " · ",
          ]),
          issued
            ? [
                "Keywarden key ",
                h("code", { text: `${issued.start}…` }),
                issued.backup_key_id ? " and a backup key" : "",
              ]
            : "Keywarden key issued at commit, under the settings above (shown once)",
        ];
      }),
    ),
    part(
      "testing",
      "Live checks",
      items(ids, (id) => {
        const r = testing?.results?.[id];
        return `${ctx.name(id)}: ${r ? `${r.status} (${words(r.reason)}, ${r.latency_ms} ms)` : "not tested"}`;
      }),
    ),
    part(
      "monitoring",
      "Monitoring",
      h("h3", { text: "Channels" }),
      items(
        monitoring?.channels || [],
        (c) => `${c.name} — ${c.kind}: ${c.to || c.url || c.webhook_url || ""}`,
      ),
      h("h3", { text: "Rules" }),
      items(monitoring?.rules || [], (r) => {
        const what = {
          usage_threshold: `over ${r.threshold} per ${r.window}`,
          failure_rate: `over ${r.threshold_percent}% failures`,
        };
        const scope = r.service_id ? ` for ${ctx.name(r.service_id)}` : "";
        return `${words(r.kind)}${scope}: ${what[r.kind] || `${r.days_before} days before expiry`} → ${r.channel_names.join(", ")}`;
      }),
    ),
    !done && [
      stepUp,
      h(
        "p",
        { class: "actions" },
        btn("Back", () => ctx.navigate("monitoring")),
        commit,
      ),
    ],
  ]);
}
