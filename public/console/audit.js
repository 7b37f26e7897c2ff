// The audit log: newest first, filtered by action (or a family such as `key`), actor and time range, paged
// with `before_seq`; and the verdict of the keyed hash chain (GET /api/v1/audit/verify).
import { api } from "../app/api.js";
import { btn, clear, clearErrors, field, h, input, placeErrors } from "../app/dom.js";
import { dataTable, labelCells, tableRegion } from "./cards.js";
import { when } from "./subject.js";

const FAMILIES = [
  "alert",
  "channel",
  "credential",
  "data_key",
  "key",
  "policy",
  "rule",
  "tenant",
  "totp",
  "wizard",
];
const ACTIONS = [
  "credential.reveal",
  "credential.rotate",
  "credential.rollback",
  "key.create",
  "key.revoke",
  "key.rotate",
  "key.update",
  "policy.update",
  "totp.enroll",
  "totp.confirm",
  "totp.lockout",
  "wizard.commit",
];
const target = (type, id) =>
  type === "key" || type === "credential"
    ? h("a", { href: `#/${type}s/${encodeURIComponent(id)}`, text: `${type} ${id}` })
    : `${type.replaceAll("_", " ")} ${id}`;
const detail = (d) =>
  Object.entries(d ?? {})
    .map(([k, v]) => `${k.replaceAll("_", " ")}: ${typeof v === "object" ? JSON.stringify(v) : String(v)}`)
    .join("; ");
/** A datetime-local value (the browser's time zone) as RFC 3339. */
const instant = (value) => (value ? new Date(value).toISOString() : "");

export async function renderAudit(page, filters = {}) {
  const ui = page("Audit log");
  const chain = h("section", { class: "card", "aria-labelledby": "chain-h", "aria-live": "polite" });
  const action = input({ value: filters.action ?? "", list: "audit-actions", name: "action" });
  const actor = input({ value: filters.actor_id ?? "", name: "actor" });
  const since = input({ type: "datetime-local", value: filters.sinceLocal ?? "", name: "since" });
  const until = input({ type: "datetime-local", value: filters.untilLocal ?? "", name: "until" });
  const apply = h("button", { class: "primary", text: "Apply filters" });
  const form = h(
    "form",
    {
      noValidate: true,
      class: "card audit-filters",
      "aria-label": "Filter the audit log",
      onsubmit: (e) => {
        e.preventDefault();
        renderAudit(page, {
          action: action.value.trim(),
          actor_id: actor.value.trim(),
          sinceLocal: since.value,
          untilLocal: until.value,
        });
      },
    },
    h(
      "datalist",
      { id: "audit-actions" },
      [...FAMILIES, ...ACTIONS].map((value) => h("option", { value })),
    ),
    h(
      "div",
      { class: "grid4" },
      field("Action", action, { path: "action", hint: "One action (key.revoke) or a family (key)." }),
      field("Actor", actor, { path: "actor_id", hint: "A key id, or system." }),
      field("From", since, { path: "since" }),
      field("Until", until, { path: "until" }),
    ),
    h(
      "p",
      { class: "actions" },
      apply,
      btn("Clear filters", () => renderAudit(page, {})),
    ),
  );
  const rows = h("tbody");
  const table = tableRegion(
    "Audit entries table",
    dataTable(
      "Audit entries, newest first",
      ["Seq", "Time", "Actor", "Action", "About", "Detail"],
      rows,
      "audit cards",
    ),
  );
  const empty = h("p", { hidden: true, text: "No entries match." });
  const more = btn("Load older entries", () => load(Number(more.dataset.before)));
  ui.main.append(
    chain,
    form,
    h(
      "section",
      { class: "card", "aria-label": "Entries" },
      table,
      empty,
      h("p", { class: "actions" }, more),
    ),
  );

  const query = new URLSearchParams({ limit: "50" });
  if (filters.action) query.set("action", filters.action);
  if (filters.actor_id) query.set("actor_id", filters.actor_id);
  if (filters.sinceLocal) query.set("since", instant(filters.sinceLocal));
  if (filters.untilLocal) query.set("until", instant(filters.untilLocal));

  async function load(before) {
    if (before) query.set("before_seq", String(before));
    await ui.busy(more, async () => {
      let result;
      try {
        result = await api("GET", `/api/v1/audit?${query}`);
      } catch (err) {
        if (err.status === 422 && placeErrors(form, err.errors).length === 0) {
          form.querySelector("[aria-invalid]")?.focus();
          return;
        }
        return ui.fail(err);
      }
      rows.append(
        ...result.items.map((entry) =>
          h(
            "tr",
            { "data-seq": String(entry.seq) },
            h("td", { class: "num-cell", text: String(entry.seq) }),
            h("td", {}, h("time", { datetime: entry.at, text: when(entry.at) })),
            h("td", {
              text: entry.actor_type === "key" ? entry.actor_id : `${entry.actor_type} ${entry.actor_id}`,
            }),
            h("td", {}, h("code", { text: entry.action })),
            h("td", {}, target(entry.target_type, entry.target_id)),
            h("td", { class: "detail", text: detail(entry.detail) }),
          ),
        ),
      );
      labelCells(table);
      empty.hidden = rows.children.length > 0;
      more.dataset.before = String(result.next_before_seq ?? "");
      more.hidden = result.next_before_seq === null;
    });
  }

  async function verify(button) {
    chain.replaceChildren(h("h2", { id: "chain-h", text: "Chain" }), h("p", { text: "Verifying…" }));
    let verdict;
    try {
      verdict = await api("GET", "/api/v1/audit/verify");
    } catch (err) {
      chain.replaceChildren(h("h2", { id: "chain-h", text: "Chain" }));
      return ui.fail(err);
    }
    const again = btn("Verify again", () => verify(again));
    clear(
      chain,
      h("h2", { id: "chain-h", text: "Chain" }),
      verdict.ok
        ? h(
            "p",
            { class: "okline", "data-chain": "ok" },
            `Verified: ${verdict.rows} entries chain intact up to the recorded head.`,
          )
        : h(
            "p",
            { class: "bad", "data-chain": "broken" },
            `Broken at entry ${verdict.broken_at_seq}: ${verdict.reason}.`,
          ),
      verdict.horizon
        ? h("p", {
            class: "hint",
            text: `Entries before ${verdict.horizon.first_seq} were removed by retention on ${when(verdict.horizon.moved_at)}; the walk starts there.`,
          })
        : null,
      h(
        "p",
        { class: "hint" },
        "Every entry carries an HMAC over itself and the previous entry's; the newest is also recorded outside the database, so an edited, reordered or truncated log shows here.",
      ),
      h("p", { class: "actions" }, again),
    );
    if (button) again.focus();
  }

  clearErrors(form);
  await Promise.all([verify(), load()]);
}
