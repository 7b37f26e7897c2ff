// Channels and rules: where alerts go (each channel with its health, a real "send test" and its delivery log)
// and when they fire. The alerts themselves are on the Alerts page (alerts.js).
import { api } from "../app/api.js";
import { CHANNEL_KINDS, channelFieldLabel, channelKindLabel, channelSetting } from "../app/channel-kinds.js";
import { announce, btn, clear, clearErrors, dl, field, group, h, input } from "../app/dom.js";
import { shownOnce } from "../app/secrets.js";
import { dataTable, labelCells, tableRegion } from "./cards.js";
import { actionButton, confirmButton, formOpener, formRefused, listOf, section, when } from "./subject.js";

const path = (...parts) => `/api/v1/monitoring/${parts.map(encodeURIComponent).join("/")}`;

// Each rule kind's settings (src/monitoring/rule-schemas.ts): [field, label, type, hint]. Empty: the default.
const KEY = ["key_id", "Only this key id", "text", "Empty: every key in scope."];
const WINDOW = ["window", "Window", "select:hour=An hour,day=A day"];
const RULES = {
  usage_threshold: [
    "Usage threshold",
    [
      WINDOW,
      ["threshold", "Requests in the window", "number", "Set this or the percent below, not both."],
      ["percent_of_limit", "Percent of each key's usage limit", "number"],
      KEY,
    ],
  ],
  failure_rate: [
    "Failure rate",
    [
      WINDOW,
      ["threshold_percent", "Failed verifications above (%)", "number"],
      ["min_requests", "Only with at least this many verifications", "number", "Default 20."],
      KEY,
    ],
  ],
  expiry_warning: [
    "Expiry warning",
    [
      ["days_before", "Days before expiry", "days", "Up to 5, separated by commas. Default 30, 7, 1."],
      ["subjects", "About", "set:key=Keys,credential=Credentials"],
    ],
  ],
  rotation: [
    "Rotation",
    [
      ["on", "When a rotation is", "set:due=Due,overdue=Overdue,failed=Failed"],
      ["overdue_after_hours", "Overdue after (hours)", "number", "Default 24."],
    ],
  ],
  retest_failing: ["Live re-test failing", []],
  anomaly_volume: [
    "Unusual volume",
    [
      ["z_threshold", "Standard deviations above the key's baseline", "number", "Default 4."],
      ["min_count", "Ignore hours with fewer requests than", "number", "Default 50."],
      KEY,
    ],
  ],
  anomaly_failures: [
    "Unusual failures",
    [
      ["z_threshold", "Standard deviations above the key's baseline", "number", "Default 4."],
      ["min_count", "Ignore hours with fewer failures than", "number", "Default 20."],
      KEY,
    ],
  ],
  new_origin: ["New origin", [["origins", "A new", "set:country=Country,network=Network"], KEY]],
  auth_failure_burst: [
    "Failed sign-ins burst",
    [["threshold", "Refused authentications in an hour", "number", "Default 25."]],
  ],
  channel_failing: [
    "Channel failing",
    [["after_failures", "Deliveries given up in a row", "number", "Default 3."]],
  ],
};
const SEVERITIES = ["info", "warning", "critical"];

const options = (spec) =>
  spec
    .split(":")[1]
    .split(",")
    .map((pair) => pair.split("="));

function testResult(result) {
  if (result.delivered)
    return { cls: "okline", text: `Test delivered${result.status ? ` (HTTP ${result.status})` : ""}.` };
  return {
    cls: "bad",
    text: `Not delivered: ${(result.reason || `HTTP ${result.status}`).replaceAll("_", " ")}.`,
  };
}

/** A "Send test" button that writes its outcome into `out` (a live region). */
function sendTest(ui, channel, out) {
  const button = btn("Send test", () =>
    ui.busy(button, async () => {
      out.className = "";
      out.textContent = "Sending…";
      try {
        const { cls, text } = testResult(await api("POST", path("channels", channel.id, "test"), {}));
        out.className = cls;
        out.textContent = text;
      } catch (err) {
        out.textContent = "";
        ui.fail(err);
      }
    }),
  );
  button.setAttribute("aria-label", `Send test to ${channel.name}`);
  return button;
}

function healthBadge(channel) {
  const failing = channel.health === "failing";
  return h("span", {
    class: `badge ${failing ? "bad" : "ok"}`,
    "data-health": channel.health,
    text: failing ? `Failing (${channel.consecutive_failures} in a row)` : "Healthy",
  });
}

/** `secret`: a webhook signing secret just created, shown once above the lists. */
export async function renderMonitoring(page, secret) {
  const ui = page("Channels and rules");
  const channelsBox = h("div", {}, h("p", { text: "Loading…" }));
  const rulesBox = h("div");
  const once = h("div");
  ui.main.append(
    once,
    section(
      "Alert channels",
      h("p", {
        class: "hint",
        text: "Messages go only to https URLs on public hosts, never follow redirects, and time out after 5 seconds. Secret settings are stored encrypted and never shown again.",
      }),
      channelsBox,
    ),
    section(
      "Alert rules",
      h("p", {
        class: "hint",
        text: "Without a stored rule of their kind, the defaults apply: expiry reminders (30, 7, 1 days), rotation due, overdue or failed, a failing live re-test and a failing channel, sent to every channel. A stored rule of one of those kinds, even a disabled one, replaces its default.",
      }),
      rulesBox,
    ),
  );
  let channels;
  let rules;
  let services = [];
  try {
    [{ items: channels }, { items: rules }, { services }] = await Promise.all([
      api("GET", path("channels")),
      api("GET", path("rules")),
      api("GET", "/api/wizard/api-keys/services").catch(() => ({ services: [] })),
    ]);
  } catch (err) {
    channelsBox.replaceChildren();
    return ui.fail(err);
  }
  const reload = (shown) => renderMonitoring(page, shown);
  paintChannels(ui, channelsBox, channels, { reload });
  paintRules(ui, rulesBox, rules, { channels, services, reload });
  if (secret) {
    clear(once, shownOnce([{ label: `${secret.name} signing secret`, value: secret.value }]));
    once.querySelector("button")?.focus();
  }
}

function paintChannels(ui, box, channels, { reload }) {
  // The form of a new (channel null) or a stored channel; a new webhook secret is shown once after the save.
  const form = (channel) => (close) =>
    channelForm(ui, channel, {
      done: async (res) => {
        await reload(res.signing_secret && { name: res.channel.name, value: res.signing_secret });
        announce(`Channel ${res.channel.name} ${channel ? "saved" : "added"}.`);
      },
      cancel: close,
    });
  const add = formOpener("Add channel", form(null), "primary");
  const rows = channels.map((channel) => {
    const out = h("span", { "aria-live": "polite" });
    return h(
      "tr",
      { "data-channel": channel.id },
      h(
        "th",
        { scope: "row" },
        h("a", { href: `#/monitoring/channels/${encodeURIComponent(channel.id)}`, text: channel.name }),
      ),
      h("td", { text: channelKindLabel(channel.kind) }),
      h("td", {}, healthBadge(channel), channel.last_error ? ` ${channel.last_error}` : ""),
      h("td", { text: when(channel.last_delivery_at) }),
      h(
        "td",
        { class: "row-actions" },
        sendTest(ui, channel, out),
        editInRow(channel.name, form(channel)),
        deleteButton(ui, "Channel", channel.name, path("channels", channel.id), reload),
        out,
      ),
    );
  });
  paintList(box, {
    label: "Alert channels",
    columns: ["Channel", "Kind", "Health", "Last delivery", "Actions"],
    rows,
    empty: "No channels yet: alerts are only listed on the Alerts page.",
    add,
  });
}

/** The stored channels or rules: their table (`empty` said instead when there are none), "Add" below. */
function paintList(box, { label, columns, rows, empty, add }) {
  clear(
    box,
    rows.length
      ? tableRegion(`${label} table`, dataTable(label, columns, rows, "cards"))
      : h("p", { text: empty }),
    h("p", { class: "actions" }, add),
  );
}

/**
 * "Edit" for a table row: `make(close)` builds the form, shown in a row of its own below; its Cancel calls
 * `close`, which removes that row and gives the button back its focus.
 */
function editInRow(name, make) {
  const button = btn("Edit", () => {
    if (button.getAttribute("aria-expanded") === "true") return;
    button.setAttribute("aria-expanded", "true");
    const row = button.closest("tr");
    const form = make(() => {
      editRow.remove();
      button.setAttribute("aria-expanded", "false");
      button.focus();
    });
    const editRow = h("tr", { class: "edit-row" }, h("td", { colspan: row.cells.length }, form));
    row.after(editRow);
    form.querySelector("input")?.focus();
  });
  button.setAttribute("aria-label", `Edit ${name}`);
  return button;
}

/** "Delete" for a stored channel or rule (`what`): "Sure?" with "Delete <name>" and "Keep"; then a repaint. */
function deleteButton(ui, what, name, url, reload) {
  return confirmButton(ui, "Delete", {
    question: "Sure?",
    confirm: `Delete ${name}`,
    ariaLabel: `Delete ${name}`,
    cancel: "Keep",
    act: async () => {
      await api("DELETE", url);
      await reload();
      announce(`${what} ${name} deleted.`);
    },
  });
}

/** Stores a new (`id` null: POST) or changed (PATCH) channel or rule; a refusal is shown at the form. */
async function store(ui, form, collection, id, body, done) {
  let res;
  try {
    res = id ? await api("PATCH", path(collection, id), body) : await api("POST", path(collection), body);
  } catch (err) {
    return formRefused(ui, form, err);
  }
  await done(res);
}

/** The kind picker of a channel or rule form (`kinds`: [id, label]); a stored one's kind is fixed. */
const kindSelect = (kinds, current) =>
  h(
    "select",
    { disabled: Boolean(current) },
    kinds.map(([id, label]) => h("option", { value: id, text: label, selected: id === current })),
  );

/** Create (channel null) or edit a channel. A secret left empty when editing keeps the stored one. */
function channelForm(ui, channel, { done, cancel }) {
  const editing = Boolean(channel);
  const kind = kindSelect(
    Object.entries(CHANNEL_KINDS).map(([id, { label }]) => [id, label]),
    channel?.kind,
  );
  const name = input({ value: channel?.name ?? "", maxLength: 60 });
  const fieldsBox = h("div", { class: "grid2" });
  const controls = {};
  const paintFields = () => {
    for (const k of Object.keys(controls)) delete controls[k];
    clear(
      fieldsBox,
      CHANNEL_KINDS[kind.value].fields.map(({ name: key, label, type, secret, options: choices }) => {
        const stored = channel?.config?.[key] ?? "";
        const control =
          type === "select"
            ? h(
                "select",
                {},
                choices.map(([value, text]) => h("option", { value, text, selected: value === stored })),
              )
            : input({ type, value: secret ? "" : stored });
        controls[key] = control;
        return field(label, control, {
          path: key,
          hint:
            editing && secret && channel.secret_fields.includes(key)
              ? "Stored encrypted; leave empty to keep it."
              : undefined,
        });
      }),
    );
  };
  kind.addEventListener("change", paintFields);
  paintFields();
  const rotate = input({ type: "checkbox" });
  const save = h("button", { class: "primary", text: editing ? "Save channel" : "Add channel" });
  const form = h(
    "form",
    {
      class: "subform",
      noValidate: true,
      "aria-label": editing ? `Edit channel ${channel.name}` : "New channel",
      onsubmit: (e) => {
        e.preventDefault();
        ui.busy(save, async () => {
          clearErrors(form);
          const body = editing ? {} : { kind: kind.value };
          if (!editing || name.value.trim() !== channel.name) body.name = name.value.trim();
          for (const [key, control] of Object.entries(controls)) {
            const value = control.value.trim();
            if (!editing) {
              if (value) body[key] = value;
              continue;
            }
            // Unchanged settings stay out of the PATCH; secrets are not in `config`, so an empty one is kept.
            if (value === (channel.config[key] ?? "")) continue;
            if (value) body[key] = value;
            else if (key === "credential_id") body.credential_id = null;
          }
          if (editing && rotate.checked) body.rotate_signing_secret = true;
          await store(ui, form, "channels", channel?.id, body, done);
        });
      },
    },
    h("h3", { text: editing ? `Edit channel ${channel.name}` : "New channel" }),
    h(
      "div",
      { class: "grid2" },
      field("Kind", kind, { path: "kind" }),
      field("Channel name", name, { path: "name" }),
    ),
    fieldsBox,
    !editing &&
      h("p", {
        class: "hint",
        text: "A webhook is signed per Standard Webhooks; Keywarden generates its signing secret and shows it once.",
      }),
    editing &&
      channel.kind === "webhook" &&
      field("Rotate the signing secret (the new one is shown once)", rotate, {
        path: "rotate_signing_secret",
      }),
    h("p", { class: "actions" }, save, btn("Cancel", cancel)),
  );
  return form;
}

function paintRules(ui, box, rules, { channels, services, reload }) {
  const channelName = (id) => channels.find((c) => c.id === id)?.name ?? id;
  // The form of a new (rule null) or a stored rule.
  const form = (rule) => (close) =>
    ruleForm(ui, rule, {
      channels,
      services,
      done: async (saved) => {
        await reload();
        announce(`Rule ${saved.name} ${rule ? "saved" : "added"}.`);
      },
      cancel: close,
    });
  const add = formOpener("Add rule", form(null), "primary");
  const rows = rules.map((rule) => {
    const toggle = actionButton(ui, rule.enabled ? "Disable" : "Enable", async () => {
      await api("PATCH", path("rules", rule.id), { enabled: !rule.enabled });
      await reload();
      announce(`Rule ${rule.name} ${rule.enabled ? "disabled" : "enabled"}.`);
    });
    toggle.setAttribute("aria-label", `${rule.enabled ? "Disable" : "Enable"} ${rule.name}`);
    return h(
      "tr",
      { "data-rule": rule.id },
      h("th", { scope: "row", text: rule.name }),
      h("td", { text: RULES[rule.kind]?.[0] ?? rule.kind }),
      h("td", {}, h("span", { class: `sev sev-${rule.severity}`, text: rule.severity })),
      h("td", {
        text: rule.channel_ids.length ? rule.channel_ids.map(channelName).join(", ") : "Listed only",
      }),
      h("td", {
        "data-enabled": String(rule.enabled),
        text: rule.enabled ? "Enabled" : "Disabled",
      }),
      h(
        "td",
        { class: "row-actions" },
        toggle,
        editInRow(rule.name, form(rule)),
        deleteButton(ui, "Rule", rule.name, path("rules", rule.id), reload),
      ),
    );
  });
  paintList(box, {
    label: "Alert rules",
    columns: ["Rule", "Kind", "Severity", "Notifies", "State", "Actions"],
    rows,
    empty: "No stored rules: the defaults apply.",
    add,
  });
}

/** The settings controls of one rule kind; `read()` returns the settings object (empty fields left out). */
function settingsControls(kind, settings) {
  const readers = [];
  const fields = RULES[kind][1].map(([key, label, type, hint]) => {
    const value = settings?.[key];
    if (type.startsWith("set:")) {
      const boxes = options(type).map(([id, text]) => [
        id,
        input({ type: "checkbox", value: id, checked: Array.isArray(value) ? value.includes(id) : true }),
        text,
      ]);
      readers.push((out) => {
        out[key] = boxes.filter(([, box]) => box.checked).map(([id]) => id);
      });
      return group(
        label,
        `settings.${key}`,
        boxes.map(([, box, text]) => field(text, box)),
      );
    }
    if (type.startsWith("select:")) {
      const select = h(
        "select",
        {},
        h("option", { value: "", text: "Default" }),
        options(type).map(([id, text]) => h("option", { value: id, text, selected: id === value })),
      );
      readers.push((out) => {
        if (select.value) out[key] = select.value;
      });
      return field(label, select, { path: `settings.${key}`, hint });
    }
    const control = input({
      type: type === "number" ? "number" : "text",
      step: type === "number" ? "any" : undefined,
      value: Array.isArray(value) ? value.join(", ") : (value ?? ""),
    });
    readers.push((out) => {
      const text = control.value.trim();
      if (!text) return;
      if (type === "number") out[key] = Number(text);
      else if (type === "days") out[key] = listOf(text).map(Number);
      else out[key] = text;
    });
    return field(label, control, { path: `settings.${key}`, hint });
  });
  return {
    fields,
    read() {
      const out = {};
      for (const read of readers) read(out);
      return out;
    },
  };
}

/** Create (rule null) or edit a rule; the kind of a stored rule is fixed. */
function ruleForm(ui, rule, { channels, services, done, cancel }) {
  const editing = Boolean(rule);
  const kind = kindSelect(
    Object.entries(RULES).map(([id, [label]]) => [id, label]),
    rule?.kind,
  );
  const name = input({ value: rule?.name ?? "", maxLength: 80 });
  const service = h(
    "select",
    {},
    h("option", { value: "", text: "Any service" }),
    services.map((s) => h("option", { value: s.id, text: s.name, selected: s.id === rule?.service_id })),
  );
  const severity = h(
    "select",
    {},
    SEVERITIES.map((s) => h("option", { value: s, text: s, selected: s === (rule?.severity ?? "warning") })),
  );
  const cooldown = input({
    type: "number",
    min: 0,
    max: 43200,
    value: Math.round((rule?.cooldown_seconds ?? 3600) / 60),
  });
  const enabled = input({ type: "checkbox", checked: rule?.enabled ?? true });
  const notify = channels.map((c) => [
    c.id,
    input({ type: "checkbox", value: c.id, checked: rule?.channel_ids.includes(c.id) ?? false }),
    c.name,
  ]);
  const settingsBox = h("div", { class: "grid2" });
  let settings;
  const paintSettings = () => {
    settings = settingsControls(kind.value, kind.value === rule?.kind ? rule.settings : undefined);
    clear(
      settingsBox,
      settings.fields.length
        ? settings.fields
        : h("p", { class: "hint", text: "This kind has no settings." }),
    );
  };
  kind.addEventListener("change", paintSettings);
  paintSettings();
  const save = h("button", { class: "primary", text: editing ? "Save rule" : "Add rule" });
  const form = h(
    "form",
    {
      class: "subform",
      noValidate: true,
      "aria-label": editing ? `Edit rule ${rule.name}` : "New rule",
      onsubmit: (e) => {
        e.preventDefault();
        ui.busy(save, async () => {
          clearErrors(form);
          const body = {
            ...(editing ? {} : { kind: kind.value }),
            name: name.value.trim(),
            service_id: service.value || null,
            settings: settings.read(),
            channel_ids: notify.filter(([, box]) => box.checked).map(([id]) => id),
            severity: severity.value,
            cooldown_seconds: Math.round(Number(cooldown.value || 0) * 60),
            enabled: enabled.checked,
          };
          await store(ui, form, "rules", rule?.id, body, done);
        });
      },
    },
    h("h3", { text: editing ? `Edit rule ${rule.name}` : "New rule" }),
    h(
      "div",
      { class: "grid2" },
      field("Kind", kind, { path: "kind" }),
      field("Rule name", name, { path: "name" }),
      field("Service", service, { path: "service_id", hint: "Only keys of this service." }),
      field("Severity", severity, { path: "severity" }),
      field("Quiet period after an alert (minutes)", cooldown, {
        path: "cooldown_seconds",
        hint: "The same alert does not notify again within it. Default 60.",
      }),
    ),
    group("Settings", "settings", settingsBox),
    group(
      "Notify",
      "channel_ids",
      notify.length
        ? notify.map(([, box, text]) => field(text, box))
        : h("p", { class: "hint", text: "No channels yet: the rule's alerts are only listed." }),
    ),
    field("Enabled", enabled, { path: "enabled" }),
    h("p", { class: "actions" }, save, btn("Cancel", cancel)),
  );
  return form;
}

export async function renderChannel(page, id, state = "") {
  const ui = page("Channel");
  const body = h("div", {}, h("p", { text: "Loading…" }));
  ui.main.append(body);
  let channel;
  let first;
  try {
    [channel, first] = await Promise.all([
      api("GET", path("channels", id)),
      api("GET", `${path("channels", id, "deliveries")}?limit=50${state ? `&state=${state}` : ""}`),
    ]);
  } catch (err) {
    body.replaceChildren();
    return ui.fail(err);
  }
  ui.main.querySelector("h1").textContent = `Channel ${channel.name}`;
  const out = h("p", { "aria-live": "polite" });
  const rows = h("tbody");
  const more = btn("Load older deliveries", () => load(more.dataset.cursor));
  const load = (cursor) =>
    ui.busy(more, async () => {
      try {
        const next = await api(
          "GET",
          `${path("channels", id, "deliveries")}?limit=50&cursor=${encodeURIComponent(cursor)}${state ? `&state=${state}` : ""}`,
        );
        paint(next);
      } catch (err) {
        ui.fail(err);
      }
    });
  const paint = (pageOf) => {
    rows.append(
      ...pageOf.items.map((d) =>
        h(
          "tr",
          { "data-delivery": d.id },
          h("td", { text: when(d.created_at) }),
          h("td", {}, h("a", { href: `#/alerts/${encodeURIComponent(d.alert_id)}`, text: d.transition })),
          h("td", {}, h("span", { class: `badge ${deliveryClass(d.state)}`, text: d.state })),
          h("td", { class: "num-cell", text: String(d.attempts) }),
          h("td", { text: d.last_status ? `HTTP ${d.last_status}` : "—" }),
          h("td", { text: d.last_error ? d.last_error.replaceAll("_", " ") : "—" }),
          h("td", { class: "num-cell", text: d.latency_ms === null ? "—" : `${d.latency_ms} ms` }),
        ),
      ),
    );
    labelCells(body);
    more.dataset.cursor = pageOf.next_cursor ?? "";
    more.hidden = !pageOf.next_cursor;
  };
  const filter = h(
    "select",
    {
      onchange: () => {
        const s = filter.value;
        renderChannel(page, id, s);
      },
    },
    [
      ["", "All"],
      ["pending", "Pending"],
      ["retrying", "Retrying"],
      ["delivered", "Delivered"],
      ["dead", "Gave up"],
    ].map(([value, text]) => h("option", { value, text, selected: value === state })),
  );
  clear(
    body,
    section(
      "Channel",
      dl([
        ["Kind", channelKindLabel(channel.kind)],
        ["Health", healthBadge(first.channel)],
        ["Last delivery", when(first.channel.last_delivery_at)],
        ["Last error", first.channel.last_error ?? "—"],
        ...Object.entries(channel.config).map(([k, v]) => channelSetting(channel.kind, k, v)),
        [
          "Stored encrypted",
          channel.secret_fields.length
            ? channel.secret_fields.map((name) => channelFieldLabel(channel.kind, name)).join(", ")
            : "—",
        ],
      ]),
      h("p", { class: "actions" }, sendTest(ui, channel, out)),
      out,
    ),
    section(
      "Delivery log",
      h("div", { class: "inline-form" }, field("Show", filter)),
      tableRegion(
        "Delivery log table",
        dataTable(
          `Deliveries to ${channel.name}, newest first`,
          ["Sent", "Alert", "State", "Attempts", "Last answer", "Error", "Latency"],
          rows,
          "cards",
        ),
      ),
      first.items.length
        ? null
        : h("p", { text: state ? "No deliveries in this state." : "No deliveries yet." }),
      h("p", { class: "actions" }, more),
    ),
    h("p", {}, h("a", { href: "#/monitoring", text: "All channels and rules" })),
  );
  paint(first);
}

const deliveryClass = (state) =>
  state === "delivered" ? "ok" : state === "dead" ? "bad" : state === "retrying" ? "warnb" : "";
