// Alerts: what is firing, acknowledged or resolved, and the two things a person does with one.
import { api } from "../app/api.js";
import { announce, btn, dl, h } from "../app/dom.js";
import { dataTable } from "./cards.js";
import { actionButton, when } from "./subject.js";

const STATES = ["firing", "acknowledged", "resolved"];
const subjectLink = ({ type, id }) =>
  type === "key" || type === "credential"
    ? h("a", { href: `#/${type}s/${encodeURIComponent(id)}`, text: `${type} ${id}` })
    : `${type} ${id}`;

/** Acknowledge or resolve buttons for an open alert; `after` re-renders. */
function actions(ui, alert, after) {
  const act = (label, verb) => {
    const button = actionButton(ui, label, async () => {
      await api("POST", `/api/v1/alerts/${encodeURIComponent(alert.id)}/${verb}`, {});
      announce(`Alert ${verb === "acknowledge" ? "acknowledged" : "resolved"}.`);
      await after();
    });
    button.setAttribute("aria-label", `${label}: ${alert.summary ?? alert.kind}`);
    return button;
  };
  if (alert.state === "resolved") return null;
  return [alert.state === "firing" ? act("Acknowledge", "acknowledge") : null, act("Resolve", "resolve")];
}

export async function renderAlerts(
  page,
  state = new URLSearchParams(location.search).get("state") || "firing",
) {
  const ui = page("Alerts");
  const tabs = h(
    "p",
    { class: "actions tabs", role: "group", "aria-label": "Alert state" },
    STATES.map((s) => {
      const b = btn(s[0].toUpperCase() + s.slice(1), () => renderAlerts(page, s));
      b.setAttribute("aria-pressed", String(s === state));
      return b;
    }),
  );
  const body = h("div", { class: "card" }, h("p", { text: "Loading…" }));
  ui.main.append(tabs, body);
  try {
    const { items } = await api("GET", `/api/v1/alerts?state=${state}&limit=100`);
    if (!items.length) {
      body.replaceChildren(h("p", { text: `No ${state} alerts.` }));
      return;
    }
    const rows = items.map((alert) =>
      h(
        "tr",
        { "data-alert": alert.id },
        h("td", {}, h("span", { class: `sev sev-${alert.severity}`, text: alert.severity })),
        h(
          "td",
          {},
          h("a", { href: `#/alerts/${encodeURIComponent(alert.id)}`, text: alert.summary ?? alert.kind }),
        ),
        h("td", {}, subjectLink(alert.subject)),
        h("td", { text: when(alert.fired_at) }),
        h(
          "td",
          {},
          actions(ui, alert, () => renderAlerts(page, state)),
        ),
      ),
    );
    body.replaceChildren(
      dataTable(`${state} alerts`, ["Severity", "Alert", "About", "Fired", "Actions"], rows),
    );
  } catch (err) {
    body.replaceChildren();
    ui.fail(err);
  }
}

export async function renderAlert(page, id) {
  const ui = page("Alert");
  try {
    const alert = await api("GET", `/api/v1/alerts/${encodeURIComponent(id)}`);
    ui.main.querySelector("h1").textContent = alert.summary ?? `Alert ${alert.id}`;
    const deliveries = Array.isArray(alert.deliveries) ? alert.deliveries : [];
    ui.main.append(
      h(
        "div",
        { class: "card" },
        dl([
          ["State", h("span", { "data-state": alert.state, text: alert.state })],
          ["Severity", alert.severity],
          ["Kind", alert.kind],
          ["About", subjectLink(alert.subject)],
          ["Fired", when(alert.fired_at)],
          ["Acknowledged", when(alert.acknowledged_at)],
          ["Resolved", when(alert.resolved_at)],
          ...Object.entries(alert.detail ?? {}).map(([k, v]) => [k.replaceAll("_", " "), String(v ?? "—")]),
        ]),
        h(
          "p",
          { class: "actions" },
          actions(ui, alert, () => renderAlert(page, id)),
        ),
      ),
      deliveries.length
        ? h(
            "div",
            { class: "card" },
            h("h2", { text: "Notifications" }),
            h(
              "ul",
              {},
              deliveries.map((d) =>
                h("li", {
                  text: `${d.transition} → ${d.channel_name ?? d.channel_id}: ${d.state}${d.attempts ? ` after ${d.attempts} attempt(s)` : ""}`,
                }),
              ),
            ),
          )
        : null,
      h("p", {}, h("a", { href: "#/alerts", text: "All alerts" })),
    );
  } catch (err) {
    ui.fail(err);
  }
}
