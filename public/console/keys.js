// Keys: the list with search and filters, creation (the plaintext shown once), and each key's page with its
// state, rotation, usage chart and the actions on it (disable or enable, rotate with an overlap, revoke, edit).
import { api } from "../app/api.js";
import { announce, clearErrors, dl, field, group, h, input, setFieldError } from "../app/dom.js";
import { shownOnce } from "../app/secrets.js";
import { dataTable } from "./cards.js";
import {
  actionButton,
  badge,
  confirmButton,
  disclosure,
  filteredList,
  filterForm,
  formRefused,
  listOf,
  numberOf,
  rotationPairs,
  section,
  signInAgain,
  stepUpCode,
  when,
} from "./subject.js";
import { usageChart } from "./usage-chart.js";

const ROLE_LABELS = { read_only: "Read only", read_write: "Read and write", admin: "Admin (every scope)" };
/**
 * The words for the API's key `state` (src/keys/key-state.ts defines the states; the list's State filter sends
 * them as they are).
 */
const STATES = {
  active: ["Active", "ok"],
  disabled: ["Disabled", "warn"],
  rotated: ["Replaced, in overlap", "warn"],
  expired: ["Expired", "bad"],
  revoked: ["Revoked", "bad"],
};

const stateBadge = (key) => {
  const [text, tone] = STATES[key.state] ?? [key.state, null];
  return badge(text, tone);
};

const keyPath = (id, rest = "") => `/api/v1/keys/${encodeURIComponent(id)}${rest}`;
const keyLink = (key) => h("a", { href: `#/keys/${encodeURIComponent(key.id)}`, text: key.name });

/** The catalogue's service names by id (public reference data); an empty map when it cannot be read. */
async function serviceNames() {
  try {
    const { services } = await api("GET", "/api/v1/services");
    return new Map(services.map((s) => [s.id, s.name]));
  } catch {
    return new Map();
  }
}

const isoFromLocal = (value) => (value ? new Date(value).toISOString() : null);
const localFromIso = (iso) => {
  if (!iso) return "";
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
};
const num = (attrs) => input({ type: "number", step: "1", inputMode: "numeric", ...attrs });

/**
 * The limits and allowlists of a key, for creation and editing: rate limit, usage limit with refill, IP and
 * country allowlists. `read()` returns each as the API takes it, null when left empty, or throws after marking
 * a half-filled pair.
 */
function limitFields(key) {
  const c = {
    limit: num({ min: 1, max: 1_000_000, value: key?.ratelimit?.limit ?? "" }),
    window: num({ min: 1, max: 86_400, value: key?.ratelimit ? key.ratelimit.window_ms / 1000 : "" }),
    remaining: num({ min: 0, value: key?.usage_limit?.remaining ?? "" }),
    refill: num({ min: 1, value: key?.usage_limit?.refill_amount ?? "" }),
    every: num({
      min: 1,
      max: 44_640,
      value: key?.usage_limit?.refill_interval_ms ? key.usage_limit.refill_interval_ms / 60_000 : "",
    }),
    ips: h("textarea", {
      rows: 3,
      spellcheck: "false",
      value: (key?.ip_allowlist ?? []).join("\n"),
    }),
    countries: input({ value: (key?.country_allowlist ?? []).join(" "), autocapitalize: "characters" }),
  };
  const el = group(
    "Limits and allowlists",
    "limits",
    h(
      "div",
      { class: "grid2" },
      field("Rate limit: requests", c.limit, { path: "ratelimit.limit", hint: "Empty: no rate limit." }),
      field("per window of (seconds)", c.window, { path: "ratelimit.window_ms" }),
    ),
    h(
      "div",
      { class: "grid3" },
      field("Usage limit: uses", c.remaining, {
        path: "usage_limit.remaining",
        hint: "Total verifications allowed. Empty: unlimited.",
      }),
      field("Refill amount", c.refill, { path: "usage_limit.refill_amount" }),
      field("Refill every (minutes)", c.every, { path: "usage_limit.refill_interval_ms" }),
    ),
    field("IP allowlist", c.ips, {
      path: "ip_allowlist",
      hint: "Addresses or CIDR ranges, one per line. Empty: any address.",
    }),
    field("Country allowlist", c.countries, {
      path: "country_allowlist",
      hint: "Two-letter country codes separated by spaces, e.g. DE FR. Empty: any country.",
    }),
  );
  const read = () => {
    const limit = numberOf(c.limit);
    const window = numberOf(c.window);
    if ((limit === null) !== (window === null)) {
      const missing = limit === null ? c.limit : c.window;
      setFieldError(missing, "Give both the number of requests and the window, or neither.");
      missing.focus();
      throw new Error("incomplete rate limit");
    }
    const remaining = numberOf(c.remaining);
    const refill = numberOf(c.refill);
    const every = numberOf(c.every);
    const ips = listOf(c.ips.value);
    const countries = listOf(c.countries.value).map((s) => s.toUpperCase());
    return {
      ratelimit: limit === null ? null : { limit, window_ms: window * 1000 },
      usage_limit:
        remaining === null
          ? null
          : {
              remaining,
              ...(refill !== null ? { refill_amount: refill } : {}),
              ...(every !== null ? { refill_interval_ms: every * 60_000 } : {}),
            },
      ip_allowlist: ips.length ? ips : null,
      country_allowlist: countries.length ? countries : null,
    };
  };
  return { el, read };
}

const sameList = (a, b) => JSON.stringify([...(a ?? [])].sort()) === JSON.stringify([...(b ?? [])].sort());

// --- the list -------------------------------------------------------------------------------------------

function createForm(ui, services, onCreated) {
  const name = input({ name: "name", required: true, maxLength: 100 });
  const environment = h(
    "select",
    { name: "environment" },
    h("option", { value: "live", text: "Live" }),
    h("option", { value: "test", text: "Test" }),
  );
  const role = h(
    "select",
    { name: "role" },
    Object.entries(ROLE_LABELS).map(([value, text]) => h("option", { value, text })),
    h("option", { value: "", text: "None: only the custom scopes below" }),
  );
  const scopes = input({ name: "scopes" });
  const level = h(
    "select",
    { name: "security_level" },
    ["basic", "enhanced", "enterprise"].map((v) =>
      h("option", { value: v, text: v[0].toUpperCase() + v.slice(1) }),
    ),
  );
  const service = h(
    "select",
    { name: "service_id" },
    h("option", { value: "", text: "None" }),
    [...services].map(([id, text]) => h("option", { value: id, text })),
  );
  const expires = input({ type: "datetime-local", name: "expires_at" });
  const days = num({ name: "policy_days", min: 1, max: 365 });
  const overlap = num({ name: "overlap_hours", min: 0, max: 720 });
  const limits = limitFields(null);
  const stepUp = stepUpCode("Only for a key with the admin scope, when your own key has enrolled 2FA.");
  const submit = h("button", { class: "primary", text: "Create key" });
  const form = h(
    "form",
    {
      noValidate: true,
      "aria-label": "Create a key",
      onsubmit: (e) => {
        e.preventDefault();
        ui.busy(submit, async () => {
          clearErrors(form);
          if (!name.value.trim()) {
            setFieldError(name, "Give the key a name.");
            return name.focus();
          }
          let limitBody;
          try {
            limitBody = limits.read();
          } catch {
            return;
          }
          const custom = listOf(scopes.value);
          const rotation = {
            ...(numberOf(days) !== null ? { policy_days: numberOf(days) } : {}),
            ...(numberOf(overlap) !== null ? { overlap_seconds: numberOf(overlap) * 3600 } : {}),
          };
          const body = {
            name: name.value.trim(),
            environment: environment.value,
            security_level: level.value,
            ...(role.value ? { role: role.value } : {}),
            ...(custom.length ? { scopes: custom } : {}),
            ...(service.value ? { service_id: service.value } : {}),
            ...(expires.value ? { expires_at: isoFromLocal(expires.value) } : {}),
            ...(Object.keys(rotation).length ? { rotation } : {}),
            ...Object.fromEntries(Object.entries(limitBody).filter(([, v]) => v !== null)),
          };
          try {
            const created = await api("POST", "/api/v1/keys", body, stepUp.headers());
            stepUp.reset();
            form.reset();
            await onCreated(created);
          } catch (err) {
            if (stepUp.refused(err)) return;
            formRefused(ui, form, err);
          }
        });
      },
    },
    h(
      "div",
      { class: "grid2" },
      field("Name", name, { path: "name", hint: "What the key is for, e.g. billing-service." }),
      field("Environment", environment, { path: "environment" }),
      field("Role", role, {
        path: "role",
        hint: "Keywarden permissions. You can grant only scopes your own key holds.",
      }),
      field("Custom scopes", scopes, {
        path: "scopes",
        hint: "Your service's own scopes, separated by spaces, e.g. orders:read.",
      }),
      field("Security level", level, {
        path: "security_level",
        hint: "Enterprise also issues a backup key.",
      }),
      field("Service", service, { path: "service_id" }),
      field("Expires", expires, { path: "expires_at", hint: "Empty: never." }),
      field("Rotate every (days)", days, {
        path: "rotation.policy_days",
        hint: "Empty: the tenant's policy, or by hand only.",
      }),
      field("Rotation overlap (hours)", overlap, {
        path: "rotation.overlap_seconds",
        hint: "How long the old key keeps verifying after a rotation. Empty: 24 hours.",
      }),
    ),
    limits.el,
    stepUp.el,
    h("p", { class: "actions" }, submit),
  );
  return form;
}

function keyRows(items, services) {
  return items.map((key) =>
    h(
      "tr",
      { "data-key": key.id },
      h("td", { "data-label": "Name" }, keyLink(key)),
      h("td", { "data-label": "Key" }, h("code", { text: `${key.start}…${key.last4}` })),
      h("td", { "data-label": "Environment", text: key.environment }),
      h("td", {
        "data-label": "Service",
        text: key.service_id ? (services.get(key.service_id) ?? key.service_id) : "—",
      }),
      h("td", { "data-label": "State" }, stateBadge(key)),
      h("td", { "data-label": "Last used", text: when(key.last_used_at) }),
      h("td", {
        "data-label": "Next rotation",
        text: key.rotation?.state === "in_progress" ? "rotating now" : when(key.rotation?.next_rotation_at),
      }),
    ),
  );
}

/**
 * `#/keys`. Every filter is a parameter of the list route, so a search finds keys beyond the pages loaded so
 * far; a change starts the list over from its first page (the search once typing pauses).
 */
export async function renderKeys(page, { notice } = {}) {
  const ui = page("Keys");
  const services = await serviceNames();
  const search = input({ type: "search", name: "q", maxLength: 100, autocomplete: "off" });
  const environment = h(
    "select",
    { name: "environment" },
    h("option", { value: "", text: "All" }),
    h("option", { value: "live", text: "Live" }),
    h("option", { value: "test", text: "Test" }),
  );
  const service = h(
    "select",
    { name: "service" },
    h("option", { value: "", text: "All" }),
    [...services]
      .sort(([, a], [, b]) => a.localeCompare(b))
      .map(([id, name]) => h("option", { value: id, text: name })),
  );
  const state = h(
    "select",
    { name: "state" },
    h("option", { value: "", text: "All" }),
    Object.entries(STATES).map(([value, [text]]) => h("option", { value, text })),
  );
  const filters = () => ({
    ...(search.value.trim() ? { q: search.value.trim() } : {}),
    ...(environment.value ? { environment: environment.value } : {}),
    ...(service.value ? { service_id: service.value } : {}),
    ...(state.value ? { state: state.value } : {}),
  });
  const { parts, load, loadSoon } = filteredList(ui, {
    noun: "key",
    path: (cursor) =>
      `/api/v1/keys?${new URLSearchParams({ limit: "100", ...filters(), ...(cursor ? { cursor } : {}) })}`,
    paint: (items) => {
      // A service id the catalogue does not name (keys may carry their own) becomes a choice once seen.
      for (const id of new Set(items.map((k) => k.service_id).filter(Boolean)))
        if (![...service.options].some((o) => o.value === id))
          service.append(h("option", { value: id, text: id }));
      return items.length
        ? dataTable(
            "Keys",
            ["Name", "Key", "Environment", "Service", "State", "Last used", "Next rotation"],
            keyRows(items, services),
            "stack",
          )
        : h("p", { text: Object.keys(filters()).length ? "No key matches these filters." : "No keys yet." });
    },
  });

  const formBox = h(
    "div",
    { id: "create-key" },
    createForm(ui, services, async (created) => {
      const once = shownOnce([
        { label: "New key", value: created.key },
        ...(created.backup_key ? [{ label: "Backup key", value: created.backup_key.key }] : []),
      ]);
      await renderKeys(page, {
        notice: h(
          "section",
          { class: "created", "aria-labelledby": "created-key" },
          h("h2", { id: "created-key", tabindex: "-1", text: `Key “${created.name}” created` }),
          once,
          h("p", {}, h("a", { href: `#/keys/${encodeURIComponent(created.id)}`, text: "Open the new key" })),
        ),
      });
      announce(`Key ${created.name} created. Copy it now: it is shown once.`);
    }),
  );
  const toggle = disclosure("Create a key", formBox);

  search.addEventListener("input", loadSoon);
  for (const select of [environment, service, state]) select.addEventListener("change", load);

  ui.main.append(
    notice ?? [],
    h("div", { class: "card" }, h("p", { class: "actions" }, toggle), formBox),
    filterForm(
      "Filter keys",
      field("Search", search, {
        hint: "Part of the name, the start of the key (e.g. kw_live_), or the whole id.",
      }),
      field("Environment", environment),
      field("Service", service),
      field("State", state),
    ),
    h("section", { class: "card", "aria-label": "Key list" }, parts),
    usageChart({ title: "Usage of all keys", what: "all keys", onError: (err) => ui.fail(err) }),
  );
  notice?.querySelector("h2")?.focus();
  await load();
}

// --- one key --------------------------------------------------------------------------------------------

function details(key, services, remaining) {
  return dl([
    ["State", stateBadge(key)],
    ["Id", h("code", { text: key.id })],
    ["Key", h("code", { text: `${key.start}…${key.last4}` })],
    ["Environment", key.environment],
    ["Security level", key.security_level],
    ["Scopes", key.scopes.length ? key.scopes.join(", ") : "none"],
    ["Service", key.service_id ? (services.get(key.service_id) ?? key.service_id) : "—"],
    ["Created", when(key.created_at)],
    ["Last used", when(key.last_used_at)],
    ["Expires", key.expires_at ? when(key.expires_at) : "never"],
    ...(key.revoked_at ? [["Revoked", when(key.revoked_at)]] : []),
    ["Rate limit", key.ratelimit ? `${key.ratelimit.limit} per ${key.ratelimit.window_ms / 1000} s` : "none"],
    [
      "Usage limit",
      key.usage_limit
        ? `${key.usage_limit.remaining} uses${remaining != null ? `, ${remaining} left` : ""}${
            key.usage_limit.refill_amount
              ? `, +${key.usage_limit.refill_amount} every ${key.usage_limit.refill_interval_ms / 60_000} min`
              : ""
          }`
        : "none",
    ],
    ["IP allowlist", key.ip_allowlist?.length ? key.ip_allowlist.join(", ") : "any"],
    ["Countries", key.country_allowlist?.length ? key.country_allowlist.join(", ") : "any"],
    ...(key.backup_of_id
      ? [
          [
            "Backup of",
            h("a", { href: `#/keys/${encodeURIComponent(key.backup_of_id)}`, text: key.backup_of_id }),
          ],
        ]
      : []),
  ]);
}

function rotationSection(key) {
  return section(
    "Rotation",
    dl([
      ...rotationPairs(key.rotation),
      ...(key.rotated_to_id
        ? [
            [
              "Replaced by",
              h("a", { href: `#/keys/${encodeURIComponent(key.rotated_to_id)}`, text: key.rotated_to_id }),
            ],
          ]
        : []),
    ]),
  );
}

function rotateForm(ui, key, onRotated) {
  const overlap = num({ name: "grace_hours", min: 0, max: 720 });
  const admin = key.scopes.includes("admin");
  const stepUp = admin
    ? stepUpCode("This key has the admin scope: needed when your own key has enrolled 2FA.")
    : null;
  const slot = h("div", { class: "alert", hidden: true });
  const submit = h("button", { class: "primary", text: "Rotate key" });
  const form = h(
    "form",
    {
      noValidate: true,
      "aria-label": "Rotate the key",
      onsubmit: (e) => {
        e.preventDefault();
        ui.busy(submit, async () => {
          clearErrors(form);
          slot.hidden = true;
          const hours = numberOf(overlap);
          try {
            const rotated = await api(
              "POST",
              keyPath(key.id, "/rotate"),
              hours === null ? {} : { grace_seconds: Math.round(hours * 3600) },
              stepUp?.headers() ?? {},
            );
            stepUp?.reset();
            await onRotated(rotated);
          } catch (err) {
            if (stepUp?.refused(err) || signInAgain(slot, err)) return;
            formRefused(ui, form, err);
          }
        });
      },
    },
    field("Overlap (hours)", overlap, {
      path: "grace_seconds",
      hint: "How long this key keeps verifying next to its successor. Empty: the key's own setting (24 hours unless changed).",
    }),
    stepUp?.el,
    slot,
    h("p", { class: "actions" }, submit),
  );
  return form;
}

function editForm(ui, key, held, onSaved) {
  const name = input({ name: "name", value: key.name, maxLength: 100 });
  // The signed-in key's own scopes are the ones it may grant (the API refuses any other Keywarden scope).
  const grantable = [...held].sort();
  const boxes = grantable.map((scope) =>
    h("input", { type: "checkbox", value: scope, checked: key.scopes.includes(scope) }),
  );
  const custom = input({
    name: "custom_scopes",
    value: key.scopes.filter((s) => !held.has(s)).join(" "),
  });
  const expires = input({ type: "datetime-local", name: "expires_at", value: localFromIso(key.expires_at) });
  const days = num({ name: "policy_days", min: 1, max: 365, value: key.rotation?.policy_days ?? "" });
  const overlap = num({ name: "overlap_hours", min: 0, max: 720 });
  const limits = limitFields(key);
  const submit = h("button", { class: "primary", text: "Save changes" });
  const form = h(
    "form",
    {
      noValidate: true,
      "aria-label": "Edit the key",
      onsubmit: (e) => {
        e.preventDefault();
        ui.busy(submit, async () => {
          clearErrors(form);
          let limitBody;
          try {
            limitBody = limits.read();
          } catch {
            return;
          }
          const scopes = [...boxes.filter((b) => b.checked).map((b) => b.value), ...listOf(custom.value)];
          const expiry = isoFromLocal(expires.value);
          const policyDays = numberOf(days);
          const rotation = {
            ...(policyDays !== (key.rotation?.policy_days ?? null) ? { policy_days: policyDays } : {}),
            ...(numberOf(overlap) !== null ? { overlap_seconds: Math.round(numberOf(overlap) * 3600) } : {}),
          };
          const body = {
            ...(name.value.trim() !== key.name ? { name: name.value.trim() } : {}),
            ...(!sameList(scopes, key.scopes) ? { scopes } : {}),
            ...(expires.value !== localFromIso(key.expires_at) ? { expires_at: expiry } : {}),
            ...(Object.keys(rotation).length ? { rotation } : {}),
            // Limits are sent only when changed: a PATCH that names them starts their counters afresh.
            ...Object.fromEntries(
              Object.entries(limitBody).filter(
                ([k, v]) => JSON.stringify(v) !== JSON.stringify(key[k] ?? null),
              ),
            ),
          };
          if (!Object.keys(body).length) return announce("Nothing changed.");
          try {
            const saved = await api("PATCH", keyPath(key.id), body);
            await onSaved(saved);
          } catch (err) {
            formRefused(ui, form, err);
          }
        });
      },
    },
    field("Name", name, { path: "name" }),
    group(
      "Scopes",
      "scopes",
      h(
        "div",
        { class: "scope-grid" },
        boxes.map((box) => field(box.value, box)),
      ),
      field("Custom scopes", custom, { hint: "Your service's own scopes, separated by spaces." }),
    ),
    h(
      "div",
      { class: "grid3" },
      field("Expires", expires, { path: "expires_at", hint: "Empty: never." }),
      field("Rotate every (days)", days, { path: "rotation.policy_days", hint: "Empty: by hand only." }),
      field("Rotation overlap (hours)", overlap, {
        path: "rotation.overlap_seconds",
        hint: "Empty: unchanged.",
      }),
    ),
    limits.el,
    h("p", { class: "actions" }, submit),
  );
  return form;
}

/** `#/keys/<id>`; `notice` (a rotated key's plaintext, a result) is shown above the key and focused. */
export async function renderKey(page, id, { notice } = {}) {
  const ui = page("Key");
  const again = (message, extra) =>
    renderKey(page, id, extra).then(() => {
      if (message) announce(message);
    });
  let key;
  let services;
  let session;
  let remaining = null;
  try {
    [key, services, session] = await Promise.all([
      api("GET", keyPath(id)),
      serviceNames(),
      api("GET", "/api/v1/auth/session"),
    ]);
    if (key.usage_limit) remaining = (await api("GET", keyPath(id, "/usage?days=1"))).remaining;
  } catch (err) {
    return ui.fail(err);
  }
  ui.main.querySelector("h1").textContent = `Key ${key.name}`;
  const { state } = key;
  const live = state !== "revoked";

  const toggleEnabled = actionButton(ui, key.enabled ? "Disable key" : "Enable key", async () => {
    await api("PATCH", keyPath(id), { enabled: !key.enabled });
    await again(key.enabled ? "Key disabled: it fails verification now." : "Key enabled.");
  });
  const revoke = confirmButton(ui, "Revoke…", {
    question: "Revoke this key for good? It fails verification at once.",
    confirm: "Revoke key",
    ariaLabel: "Revoke this key",
    act: async () => {
      await api("POST", keyPath(id, "/revoke"), {});
      await again("Key revoked.");
    },
  });
  const rotateBox = h("div", { id: "rotate-key" });
  const rotate = disclosure("Rotate now…", rotateBox);
  if (live && state !== "rotated" && state !== "expired" && key.enabled) {
    rotateBox.append(
      rotateForm(ui, key, async (rotated) => {
        await again(`Key rotated. Copy the new key now: it is shown once.`, {
          notice: h(
            "section",
            { class: "created", "aria-labelledby": "rotated-key" },
            h("h2", { id: "rotated-key", tabindex: "-1", text: "Key rotated" }),
            shownOnce([{ label: "New key", value: rotated.key }]),
            h("p", {
              text: rotated.previous.expires_at
                ? `This key keeps verifying until ${when(rotated.previous.expires_at)}, then it is retired.`
                : "This key keeps verifying until its overlap ends.",
            }),
            h(
              "p",
              {},
              h("a", { href: `#/keys/${encodeURIComponent(rotated.id)}`, text: "Open the new key" }),
            ),
          ),
        });
      }),
    );
  }

  ui.main.append(
    notice ?? [],
    section("Details", details(key, services, remaining)),
    live
      ? section(
          "Actions",
          h(
            "p",
            { class: "actions" },
            state === "expired" ? null : toggleEnabled,
            rotateBox.childElementCount ? rotate : null,
            revoke,
          ),
          rotateBox,
        )
      : null,
    rotationSection(key),
    usageChart({
      title: "Usage",
      query: { key_id: key.id },
      what: `key ${key.name}`,
      onError: (err) => ui.fail(err),
    }),
    live
      ? section(
          "Edit",
          editForm(ui, key, new Set(session.scopes), (saved) => again(`Key ${saved.name} saved.`)),
        )
      : null,
    h("p", {}, h("a", { href: "#/keys", text: "All keys" })),
  );
  notice?.querySelector("h2")?.focus();
}
