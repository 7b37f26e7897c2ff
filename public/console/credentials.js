// Credentials: the list by service with each one's status, the soft-deleted ones with restore, and each
// credential's page: live test now, reveal with step-up, versions with their stage labels and rollback, delete.
import { api, apiResponse } from "../app/api.js";
import { announce, btn, clear, clearErrors, dl, field, h } from "../app/dom.js";
import { dataTable } from "./cards.js";
import {
  actionButton,
  badge,
  confirmButton,
  filteredList,
  filterForm,
  formRefused,
  rotationPairs,
  section,
  signInAgain,
  stepUpCode,
  when,
} from "./subject.js";

const TEST_TONE = { valid: "ok", invalid: "bad", unknown: "warn" };
const STAGE_TONE = { current: "ok", pending: "warn", previous: null };
/** A provider expiry this close is shown as a warning. */
const EXPIRY_WARNING_MS = 14 * 86_400_000;

const credPath = (id, rest = "") => `/api/v1/credentials/${encodeURIComponent(id)}${rest}`;

/** The catalogue by service id (public reference data): names and field labels. */
async function catalogue() {
  try {
    const { services } = await api("GET", "/api/v1/services");
    return new Map(services.map((s) => [s.id, s]));
  } catch {
    return new Map();
  }
}
const serviceName = (services, id) => services.get(id)?.name ?? id;

function lastTest(cred) {
  const t = cred.last_test;
  if (!t) return "never tested";
  return [badge(t.status, TEST_TONE[t.status]), " ", when(t.tested_at)];
}

function expiry(cred, now = Date.now()) {
  if (!cred.provider_expires_at) return "—";
  const at = Date.parse(cred.provider_expires_at);
  if (at <= now) return [badge("expired", "bad"), " ", when(cred.provider_expires_at)];
  if (at - now < EXPIRY_WARNING_MS) return [badge("soon", "warn"), " ", when(cred.provider_expires_at)];
  return when(cred.provider_expires_at);
}

function rotationCell(rotation) {
  if (rotation?.state === "in_progress")
    return [badge("rotating", "warn"), ` ${rotation.in_progress?.step ?? ""}`];
  if (rotation?.state === "failed") return badge("rotation failed", "bad");
  return rotation?.method ?? "not configured";
}

const cell = (label, ...kids) => h("td", { "data-label": label }, kids);

function activeGroups(items, services) {
  const byService = new Map();
  for (const cred of items) byService.set(cred.service, [...(byService.get(cred.service) ?? []), cred]);
  return [...byService]
    .sort(([a], [b]) => serviceName(services, a).localeCompare(serviceName(services, b)))
    .map(([id, creds]) => {
      const title = serviceName(services, id);
      return h(
        "section",
        { class: "card", "aria-label": title, "data-service": id },
        h("h2", {}, title, h("span", { class: "badge", text: String(creds.length) })),
        dataTable(
          `${title} credentials`,
          [
            "Name",
            "Environment",
            "Version",
            "Last live test",
            "Provider expiry",
            "Next rotation",
            "Rotation",
          ],
          creds.map((cred) =>
            h(
              "tr",
              { "data-credential": cred.id },
              cell("Name", h("a", { href: `#/credentials/${encodeURIComponent(cred.id)}`, text: cred.name })),
              cell("Environment", cred.environment),
              cell("Version", String(cred.version)),
              cell("Last live test", lastTest(cred)),
              cell("Provider expiry", expiry(cred)),
              cell("Next rotation", when(cred.rotation?.next_rotation_at)),
              cell("Rotation", rotationCell(cred.rotation)),
            ),
          ),
          "stack",
        ),
      );
    });
}

function deletedTable(ui, items, services, after) {
  return h(
    "section",
    { class: "card", "aria-label": "Deleted credentials" },
    dataTable(
      "Deleted credentials",
      ["Name", "Service", "Environment", "Deleted", "Restorable until", "Actions"],
      items.map((cred) => {
        const restore = actionButton(ui, "Restore", async () => {
          await api("POST", credPath(cred.id, "/restore"), {});
          announce(`Credential ${cred.name} restored.`);
          await after();
        });
        restore.setAttribute("aria-label", `Restore ${cred.name}`);
        return h(
          "tr",
          { "data-credential": cred.id },
          cell("Name", cred.name),
          cell("Service", serviceName(services, cred.service)),
          cell("Environment", cred.environment),
          cell("Deleted", when(cred.deleted_at)),
          cell("Restorable until", when(cred.restorable_until)),
          cell("Actions", restore),
        );
      }),
      "stack",
    ),
  );
}

/**
 * `#/credentials`: active ones grouped by service, or the soft-deleted ones. Service, environment and the search
 * are parameters of the list route, so they reach credentials beyond the pages loaded so far; a change starts
 * the list over from its first page (the search once typing pauses).
 */
export async function renderCredentials(page, { status = "active" } = {}) {
  const ui = page(status === "deleted" ? "Deleted credentials" : "Credentials");
  const services = await catalogue();
  const tabs = h(
    "p",
    { class: "actions tabs", role: "group", "aria-label": "Which credentials" },
    [
      ["active", "Active"],
      ["deleted", "Deleted"],
    ].map(([value, text]) => {
      const b = btn(text, () => renderCredentials(page, { status: value }));
      b.setAttribute("aria-pressed", String(value === status));
      return b;
    }),
  );
  const service = h(
    "select",
    { name: "service" },
    h("option", { value: "", text: "All" }),
    [...services.values()].map((s) => h("option", { value: s.id, text: s.name })),
  );
  const environment = h(
    "select",
    { name: "environment" },
    h("option", { value: "", text: "All" }),
    ["development", "staging", "production"].map((v) =>
      h("option", { value: v, text: v[0].toUpperCase() + v.slice(1) }),
    ),
  );
  const search = h("input", { type: "search", name: "q", autocomplete: "off", maxLength: 100 });
  const filters = () => ({
    ...(search.value.trim() ? { q: search.value.trim() } : {}),
    ...(service.value ? { service: service.value } : {}),
    ...(environment.value ? { environment: environment.value } : {}),
  });
  const { parts, load, loadSoon } = filteredList(ui, {
    noun: "credential",
    path: (cursor) =>
      `/api/v1/credentials?${new URLSearchParams({ limit: "100", status, ...filters(), ...(cursor ? { cursor } : {}) })}`,
    paint: (items) =>
      items.length
        ? status === "deleted"
          ? deletedTable(ui, items, services, () => renderCredentials(page, { status }))
          : activeGroups(items, services)
        : h("p", {
            class: "card",
            text: Object.keys(filters()).length
              ? "No credential matches these filters."
              : status === "deleted"
                ? "No deleted credentials within the 30-day restore window."
                : "No credentials yet. The setup wizard stores them.",
          }),
  });
  search.addEventListener("input", loadSoon);
  service.addEventListener("change", load);
  environment.addEventListener("change", load);

  ui.main.append(
    tabs,
    filterForm(
      "Filter credentials",
      field("Search", search, { hint: "Part of the name, or the whole id." }),
      field("Service", service),
      field("Environment", environment),
    ),
    ...parts,
  );
  await load();
}

// --- one credential -------------------------------------------------------------------------------------

function revealSection(ui, cred, service) {
  const version = h(
    "select",
    { name: "version" },
    cred.versions.map((v) =>
      h("option", {
        value: String(v.version),
        text: `Version ${v.version}${v.stage ? ` (${v.stage})` : ""}`,
        selected: v.version === cred.version,
      }),
    ),
  );
  const stepUp = stepUpCode("Needed when your key has enrolled 2FA. Revealing is recorded in the audit log.");
  const slot = h("div", { class: "alert", hidden: true });
  const out = h("div", { class: "revealed", "aria-live": "polite" });
  const label = (name) => service?.fields.find((f) => f.name === name)?.label ?? name;
  const submit = h("button", { class: "primary", text: "Reveal values" });
  const form = h(
    "form",
    {
      noValidate: true,
      "aria-label": "Reveal the values",
      onsubmit: (e) => {
        e.preventDefault();
        ui.busy(submit, async () => {
          clearErrors(form);
          slot.hidden = true;
          try {
            const code = stepUp.value();
            const revealed = await api("POST", credPath(cred.id, "/reveal"), {
              version: Number(version.value),
              ...(code ? { totp: code } : {}),
            });
            stepUp.reset();
            const hide = btn("Hide values", () => {
              out.replaceChildren();
              announce("Values hidden.");
              submit.focus();
            });
            clear(
              out,
              h("p", {
                class: "warn",
                text: `Version ${revealed.version} in plain text. Hide it when you are done.`,
              }),
              Object.entries(revealed.fields).map(([name, value]) => {
                const copy = btn("Copy", () =>
                  navigator.clipboard.writeText(value).then(
                    () => announce(`${label(name)} copied to the clipboard.`),
                    () => announce("Copying failed: select the value and copy it by hand."),
                  ),
                );
                copy.setAttribute("aria-label", `Copy ${label(name)}`);
                return h(
                  "div",
                  { class: "secret-row", role: "group", "aria-label": label(name) },
                  h("b", { text: label(name) }),
                  h("code", { class: "secret", text: value }),
                  h("span", {}, copy),
                );
              }),
              h("p", { class: "actions" }, hide),
            );
            hide.focus();
            announce(`Version ${revealed.version} revealed.`);
          } catch (err) {
            if (stepUp.refused(err) || signInAgain(slot, err)) return;
            formRefused(ui, form, err);
          }
        });
      },
    },
    h("div", { class: "grid2" }, field("Version", version), stepUp.el),
    slot,
    h("p", { class: "actions" }, submit),
  );
  return section(
    "Reveal",
    h("p", {
      class: "hint",
      text: "Shows the plain values. A browser session must have signed in within the last 5 minutes.",
    }),
    form,
    out,
  );
}

function versionsSection(ui, cred, etag, again) {
  return section(
    "Versions",
    dataTable(
      "Versions",
      ["Version", "Stage", "Created", "Created by", "Actions"],
      cred.versions.map((v) => {
        const action =
          v.stage === "current" || v.stage === "pending"
            ? null
            : actionButton(ui, `Roll back to version ${v.version}`, async () => {
                const next = await api(
                  "POST",
                  credPath(cred.id, "/rollback"),
                  { version: v.version },
                  { "if-match": etag },
                );
                await again(
                  `Rolled back: version ${v.version}'s values are current again, as version ${next.version}.`,
                );
              });
        return h(
          "tr",
          { "data-version": String(v.version) },
          cell("Version", String(v.version)),
          cell("Stage", v.stage ? badge(v.stage, STAGE_TONE[v.stage]) : "—"),
          cell("Created", when(v.created_at)),
          cell("Created by", h("code", { text: v.created_by })),
          cell("Actions", action),
        );
      }),
      "stack",
    ),
    h("p", {
      class: "hint",
      text: "A rollback makes an older version's values current again as a new version; the version it replaces becomes previous.",
    }),
  );
}

/** The page of a credential that was just soft-deleted: when it goes for good, and the way back. */
function renderDeleted(page, id, name) {
  const ui = page(`Credential ${name} deleted`);
  const restore = actionButton(ui, "Restore credential", async () => {
    await api("POST", credPath(id, "/restore"), {});
    await renderCredential(page, id);
    announce(`Credential ${name} restored.`);
  });
  ui.main.append(
    h(
      "div",
      { class: "card" },
      h("p", {
        text: "It stays restorable for 30 days, here or in the Deleted tab of the credentials list; then it is purged.",
      }),
      h("p", { class: "actions" }, restore),
    ),
    h("p", {}, h("a", { href: "#/credentials", text: "All credentials" })),
  );
}

/** `#/credentials/<id>`. */
export async function renderCredential(page, id) {
  const ui = page("Credential");
  const again = async (message) => {
    await renderCredential(page, id);
    if (message) announce(message);
  };
  let cred;
  let etag;
  let services;
  try {
    const [res, catalog] = await Promise.all([apiResponse("GET", credPath(id)), catalogue()]);
    cred = res.data;
    etag = res.headers.get("etag");
    services = catalog;
  } catch (err) {
    ui.fail(err);
    if (err.status === 404) {
      ui.main.append(
        h("p", {
          text: "A deleted credential has no page: the Deleted tab of the credentials list can restore it within 30 days.",
        }),
        h("p", {}, h("a", { href: "#/credentials", text: "All credentials" })),
      );
    }
    return;
  }
  const service = services.get(cred.service);
  ui.main.querySelector("h1").textContent = `Credential ${cred.name}`;
  const label = (name) => service?.fields.find((f) => f.name === name)?.label ?? name;

  const test = actionButton(ui, "Test now", async () => {
    const result = await api("POST", credPath(id, "/test"), {});
    await again(`Live test: ${result.status}. ${result.reason}`);
  });
  const remove = confirmButton(ui, "Delete…", {
    question: "Delete this credential? It can be restored for 30 days.",
    confirm: "Delete credential",
    ariaLabel: "Delete this credential",
    act: async () => {
      await api("DELETE", credPath(id), undefined, { "if-match": etag });
      renderDeleted(page, id, cred.name);
      announce(`Credential ${cred.name} deleted.`);
    },
  });
  const t = cred.last_test;

  ui.main.append(
    section(
      "Details",
      dl([
        ["Service", serviceName(services, cred.service)],
        ["Environment", cred.environment],
        ["Security level", cred.security_level],
        ["Current version", String(cred.version)],
        ...Object.entries(cred.fields).map(([name, value]) => [
          `${label(name)} (masked)`,
          h("code", { text: value }),
        ]),
        ["Provider account", cred.provider_account ?? "—"],
        ["Created", when(cred.created_at)],
        ["Updated", when(cred.updated_at)],
        ["Id", h("code", { text: cred.id })],
      ]),
    ),
    section(
      "Status",
      dl([
        ["Last live test", lastTest(cred)],
        ...(t
          ? [
              ["Result", t.reason ?? "—"],
              ["Latency", t.latency_ms != null ? `${t.latency_ms} ms` : "—"],
            ]
          : []),
        ["Provider expiry", expiry(cred)],
      ]),
      h("p", { class: "actions" }, test),
    ),
    section(
      "Rotation",
      dl([["Method", cred.rotation?.method ?? "not configured"], ...rotationPairs(cred.rotation)]),
    ),
    revealSection(ui, cred, service),
    versionsSection(ui, cred, etag, again),
    section("Delete", h("p", { class: "actions" }, remove)),
    h("p", {}, h("a", { href: "#/credentials", text: "All credentials" })),
  );
}
