// Step 4: the live check of each service, one at a time so progress is visible; retry per service.
import { add, btn, h, ul } from "../dom.js";

const WORD = { valid: ["Passed", "ok"], invalid: ["Rejected", "bad"], unknown: ["Inconclusive", "warnb"] };

export function render(body, ctx) {
  const ids = ctx.state.steps.services.service_ids;
  const progress = h("progress", { max: ids.length, value: 0, "aria-label": "Live checks done" });
  const status = h("p", { "aria-live": "polite" });
  const rows = {};

  function paint(id, checking) {
    const r = !checking && ctx.state.steps.testing?.results?.[id];
    const [text, cls] = checking ? ["Checking…"] : r ? WORD[r.status] : ["Not run"];
    const [, result, reason, latency, when] = rows[id].cells;
    result.replaceChildren(h("span", { class: `badge ${cls || ""}`, text }));
    reason.textContent = r ? r.reason.replaceAll("_", " ") : "";
    latency.textContent = r ? `${r.latency_ms} ms` : "";
    when.textContent = r?.tested_at ? new Date(r.tested_at).toLocaleTimeString() : "";
  }

  async function run(list) {
    runAll.disabled = next.disabled = true;
    progress.max = list.length;
    for (const [i, id] of list.entries()) {
      progress.value = i;
      status.textContent = `Checking ${ctx.name(id)} (${i + 1} of ${list.length})…`;
      paint(id, true);
      await ctx.send("POST", "/tests", { service_ids: [id] });
      paint(id);
    }
    progress.value = list.length;
    const passed = ids.filter((id) => ctx.state.steps.testing?.results?.[id]?.status === "valid").length;
    status.textContent = `Done: ${passed} of ${ids.length} services passed their live check.`;
    runAll.disabled = next.disabled = false;
  }

  const runAll = btn("Run live checks", () => run(ids), "primary");
  const next = btn(
    "Continue to monitoring",
    () => ctx.busy(next, () => ctx.send("PUT", "/steps/testing", {})),
    "primary",
  );
  const head = ["Service", "Result", "Reason", "Latency", "Checked", "Actions"].map((t) =>
    h("th", { scope: "col", text: t }),
  );
  const table = h(
    "table",
    {},
    h("tr", {}, head),
    ids.map((id) => {
      const retry = btn("Retry", () => run([id]));
      retry.setAttribute("aria-label", `Retry ${ctx.name(id)}`);
      rows[id] = h(
        "tr",
        {},
        h("th", { scope: "row", text: ctx.name(id) }),
        h("td"),
        h("td"),
        h("td"),
        h("td"),
        h("td", {}, retry),
      );
      return rows[id];
    }),
  );
  const keys = ctx.state.steps.keys?.services || {};
  const validation = (id) => {
    const k = keys[id];
    if (!k?.complete) return "credentials incomplete";
    return k.warnings?.length
      ? `format valid; warning: ${k.warnings.join("; ")}`
      : "format valid, environment matches";
  };
  add(body, [
    h("p", {
      text: "Each service's stored credentials go to its provider in one read-only request that spends and changes nothing.",
    }),
    h("div", { class: "actions" }, runAll, progress, status),
    h("div", { class: "scroll" }, table),
    h("h2", { text: "Security validation" }),
    ul(ids.map((id) => h("li", {}, h("strong", { text: `${ctx.name(id)}: ` }), validation(id)))),
    h(
      "p",
      { class: "actions" },
      btn("Back", () => ctx.navigate("keys")),
      next,
    ),
  ]);
  for (const id of ids) paint(id);
}
