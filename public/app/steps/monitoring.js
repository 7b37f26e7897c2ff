// Step 5: alert channels (each with a real "send test") and the rules that use them.
import { CHANNEL_KINDS, wizardFields } from "../channel-kinds.js";
import { add, btn, clear, field, group, h, input } from "../dom.js";
import { shownOnce } from "../secrets.js";
import { carry } from "./review.js";

const RULES = {
  usage_threshold: ["Usage threshold", { threshold: 10000, window: "day" }],
  failure_rate: ["Failure rate", { threshold_percent: 5 }],
  expiry_warning: ["Expiry warning", { days_before: 14 }],
};

// The admin's edits, kept in memory while on this step; secrets shown once and test results, by channel name.
let draft = null;
let once = {};
let results = {};
const stored = {};
export const leave = () => {
  draft = null;
  once = {};
  results = {};
};

export function render(body, ctx) {
  const ids = ctx.state.steps.services.service_ids;
  if (!draft) {
    const saved = ctx.state.steps.monitoring;
    draft = structuredClone({ channels: saved?.channels || [], rules: saved?.rules || [] });
    // Saved channels come back masked: the signing secret is only displayed, other secrets are typed again.
    for (const ch of draft.channels) {
      if (ch.signing_secret) stored[ch.name] = ch.signing_secret;
      delete ch.signing_secret;
      for (const f of CHANNEL_KINDS[ch.kind].fields) if (f.secret) ch[f.name] = "";
    }
  }
  const chans = h("div");
  const rules = h("div");
  const bind = (obj, key, label, path, props = {}) => {
    const c = input({ value: obj[key] ?? "", ...props });
    c.oninput = () => {
      obj[key] = c.type === "number" ? Number(c.value) : c.value;
    };
    return field(label, c, { path });
  };
  const choose = (obj, key, label, options, path) => {
    const c = h("select", { onchange: () => (obj[key] = c.value) });
    for (const [value, text] of options) c.append(h("option", { value, text, selected: obj[key] === value }));
    return field(label, c, { path });
  };

  function channel(ch, i) {
    const kind = CHANNEL_KINDS[ch.kind].label;
    const p = `channels.${i}`;
    const result = h("p", { "aria-live": "polite" });
    const secret = h("div");
    const paint = () => {
      const r = results[ch.name];
      result.className = r ? (r.delivered ? "okline" : "bad") : "";
      result.textContent = r
        ? r.delivered
          ? `Test delivered${r.status ? ` (HTTP ${r.status})` : ""}.`
          : `Not delivered: ${r.reason || `HTTP ${r.status}`}.`.replaceAll("_", " ")
        : "";
      const masked =
        stored[ch.name] &&
        h("p", { class: "hint" }, "Signing secret (stored): ", h("code", { text: stored[ch.name] }));
      clear(
        secret,
        once[ch.name] ? shownOnce([{ label: `${ch.name} signing secret`, value: once[ch.name] }]) : masked,
      );
    };
    const test = btn("Send test", () =>
      ctx.busy(test, async () => {
        delete results[ch.name];
        paint();
        result.textContent = "Sending…";
        try {
          const res = await ctx.api("POST", ctx.path("/monitoring/test"), { channel: ch });
          results[ch.name] = res;
          if (res.signing_secret) once[ch.name] = res.signing_secret;
        } catch (err) {
          // The route names the channel's fields without its place in the list.
          err.errors = err.errors.map((e) => ({
            ...e,
            path: `${p}.${String(e.path).replace(/^channel\.?/, "")}`,
          }));
          ctx.fail(err, form);
        }
        paint();
      }),
    );
    paint();
    return h(
      "fieldset",
      { class: "card" },
      h("legend", { text: `${kind} channel` }),
      bind(ch, "name", "Channel name", `${p}.name`),
      wizardFields(ch.kind).map(({ name, label, type }) => bind(ch, name, label, `${p}.${name}`, { type })),
      ch.kind === "webhook" &&
        h("p", {
          class: "hint",
          text: "Signed per Standard Webhooks. Keywarden generates the signing secret and shows it once.",
        }),
      secret,
      h("p", { class: "actions" }, test, remove(draft.channels, i, `channel ${ch.name || i + 1}`)),
      result,
    );
  }

  function rule(r, i) {
    const p = `rules.${i}`;
    const names = draft.channels.map((c) => c.name).filter(Boolean);
    const notify = names.map((n) => {
      const box = input({ type: "checkbox", checked: r.channel_names.includes(n) });
      box.onchange = () => {
        r.channel_names = names.filter((x) => (x === n ? box.checked : r.channel_names.includes(x)));
      };
      return field(n, box);
    });
    return h(
      "fieldset",
      { class: "card" },
      h("legend", { text: RULES[r.kind][0] }),
      "service_id" in r &&
        choose(
          r,
          "service_id",
          "Service",
          ids.map((id) => [id, ctx.name(id)]),
          `${p}.service_id`,
        ),
      "threshold" in r && [
        bind(r, "threshold", "Alert above (requests)", `${p}.threshold`, { type: "number", min: 1 }),
        choose(
          r,
          "window",
          "Per",
          [
            ["hour", "hour"],
            ["day", "day"],
          ],
          `${p}.window`,
        ),
      ],
      "threshold_percent" in r &&
        bind(r, "threshold_percent", "Alert above failure rate (%)", `${p}.threshold_percent`, {
          type: "number",
          min: 0.1,
          max: 100,
        }),
      "days_before" in r &&
        bind(r, "days_before", "Warn this many days before a key or credential expires", `${p}.days_before`, {
          type: "number",
          min: 1,
          max: 90,
        }),
      group(
        "Notify",
        `${p}.channel_names`,
        notify.length ? notify : h("p", { class: "hint", text: "Add a channel first." }),
      ),
      h("p", { class: "actions" }, remove(draft.rules, i, `${RULES[r.kind][0]} rule ${i + 1}`)),
    );
  }

  const remove = (list, i, what) => {
    const b = btn("Remove", () => {
      list.splice(i, 1);
      paint();
    });
    b.setAttribute("aria-label", `Remove ${what}`);
    return b;
  };
  const paintRules = () => clear(rules, draft.rules.map(rule));
  function paint(box) {
    clear(chans, draft.channels.map(channel));
    paintRules();
    box?.lastElementChild?.querySelector("input, select")?.focus();
  }
  // Channel names feed the rules' "Notify" lists.
  chans.addEventListener("change", paintRules);

  const adders = (box, entries, make) =>
    h(
      "p",
      { class: "actions" },
      entries.map(([kind, label]) =>
        btn(`Add ${box === chans ? `${label} channel` : `${label.toLowerCase()} rule`}`, () => {
          make(kind);
          paint(box);
        }),
      ),
    );
  const next = h("button", { class: "primary", text: "Save and continue to review" });
  const form = h(
    "form",
    {
      noValidate: true,
      onsubmit: (e) => {
        e.preventDefault();
        ctx.busy(next, async () => {
          try {
            const res = await ctx.api("PUT", ctx.path("/steps/monitoring"), draft);
            // Signing secrets created by this save are shown once, on the review page the server moves us to.
            carry(
              Object.entries(res.signing_secrets || {}).map(([n, value]) => ({
                label: `${n} signing secret`,
                value,
              })),
            );
            ctx.update(res.state);
          } catch (err) {
            ctx.fail(err, form);
          }
        });
      },
    },
    h("h2", { text: "Alert channels" }),
    h("p", {
      class: "hint",
      text: "Messages go only to https URLs on public hosts, never follow redirects, and time out after 5 seconds.",
    }),
    chans,
    adders(
      chans,
      Object.entries(CHANNEL_KINDS).map(([kind, { label }]) => [kind, label]),
      (kind) => draft.channels.push({ kind, name: "" }),
    ),
    h("h2", { text: "Alert rules" }),
    rules,
    adders(
      rules,
      Object.entries(RULES).map(([kind, [label]]) => [kind, label]),
      (kind) =>
        draft.rules.push({
          kind,
          ...(kind === "expiry_warning" ? {} : { service_id: ids[0] }),
          ...RULES[kind][1],
          channel_names: [],
        }),
    ),
    h(
      "p",
      { class: "actions" },
      btn("Back", () => ctx.navigate("testing")),
      next,
    ),
  );
  add(body, [
    h("p", {
      text: "Where Keywarden sends alerts, and when. The rules are stored now and evaluated on a schedule later.",
    }),
    form,
  ]);
  paint();
}
