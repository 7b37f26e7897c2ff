// Pieces the key and credential pages share (the two kinds of object an alert links to): times, state
// badges, the rotation summary, the step-up code field, an inline confirmation and a paged list.
import { api } from "../app/api.js";
import { announce, btn, clear, field, h, input, placeErrors, setFieldError, uid } from "../app/dom.js";

export const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

const TONES = { ok: "ok", bad: "bad", warn: "warnb" };
/** A state badge: the word is the information, the colour only repeats it. */
export const badge = (text, tone) => h("span", { class: `badge ${TONES[tone] ?? ""}`.trim(), text });

export const ROTATION_STATE_TONE = { idle: null, in_progress: "warn", failed: "bad" };

/** The `rotation` object both kinds share, as definition-list pairs. */
export function rotationPairs(rotation = {}) {
  const run = rotation.in_progress;
  return [
    [
      "State",
      badge((rotation.state ?? "idle").replace("_", " "), ROTATION_STATE_TONE[rotation.state ?? "idle"]),
    ],
    ["Schedule", rotation.policy_days ? `every ${rotation.policy_days} days` : "by hand only"],
    ["Next rotation", rotation.next_rotation_at ? when(rotation.next_rotation_at) : "not scheduled"],
    ["Last rotated", when(rotation.last_rotated_at)],
    ...(run
      ? [
          ["Running step", run.step],
          ["Started", when(run.started_at)],
          ["Overlap ends", when(run.overlap_ends_at)],
        ]
      : []),
    ...(rotation.last_error ? [["Last error", h("span", { class: "bad", text: rotation.last_error })]] : []),
  ];
}

/**
 * The optional two-factor code of a step-up operation (reveal, an admin-capable key's creation or rotation).
 * The console cannot tell whether the signed-in key enrolled 2FA, so the field is always offered and only sent
 * when filled. `refused(err)` places a missing or wrong code at the field and returns true; a stale session
 * (also a 401) is left to the caller.
 */
export function stepUpCode(hint) {
  const control = input({
    name: "totp",
    inputMode: "numeric",
    autocomplete: "one-time-code",
    maxLength: 6,
    pattern: "[0-9]*",
  });
  const wrap = field("Two-factor code", control, { path: "totp", hint });
  return {
    el: wrap,
    value: () => control.value.trim(),
    headers() {
      const code = control.value.trim();
      return code ? { "x-keywarden-totp": code } : {};
    },
    reset() {
      control.value = "";
      setFieldError(control, "");
    },
    refused(err) {
      if (err?.status !== 401 || !err.errors?.some((e) => e.path === "totp")) return false;
      placeErrors(wrap, err.errors);
      announce(err.errors.find((e) => e.path === "totp").message);
      control.focus();
      return true;
    },
  };
}

/**
 * A step-up refused because the session is older than the step-up window: the message and a way to sign in
 * again (signing out and reloading brings the sign-in form; this page opens again after it).
 */
export function signInAgain(slot, err) {
  if (err?.status !== 401) return false;
  clear(
    slot,
    h("p", { class: "bad", text: err.message }),
    btn("Sign in again", async () => {
      await api("DELETE", "/api/v1/auth/session").catch(() => null);
      location.reload();
    }),
  ).hidden = false;
  slot.querySelector("button").focus();
  return true;
}

/**
 * A button that asks before acting: the first press shows the question with "confirm" and "cancel" buttons
 * next to it (keyboard focus moves to the confirm button); `act` runs on confirm.
 */
export function confirmButton(label, { question, confirm, ariaLabel, cls, act }) {
  const open = btn(
    label,
    () => {
      open.hidden = true;
      box.hidden = false;
      yes.focus();
    },
    cls,
  );
  if (ariaLabel) open.setAttribute("aria-label", ariaLabel);
  const close = () => {
    box.hidden = true;
    open.hidden = false;
    open.focus();
  };
  const yes = btn(
    confirm,
    async () => {
      yes.disabled = no.disabled = true;
      try {
        await act();
      } finally {
        yes.disabled = no.disabled = false;
      }
    },
    "danger",
  );
  const no = btn("Cancel", close);
  const box = h(
    "span",
    {
      class: "confirm",
      role: "group",
      "aria-label": ariaLabel ?? label,
      hidden: true,
      onkeydown: (e) => {
        if (e.key === "Escape") close();
      },
    },
    h("span", { text: question }),
    yes,
    no,
  );
  return h("span", { class: "confirm-wrap" }, open, box);
}

/**
 * A list read page by page through the API's cursor: `load()` fetches the first page, `more()` the next;
 * `items` is everything fetched so far. `path(cursor)` builds the URL.
 */
export function pagedList(path) {
  const state = { items: [], next: null };
  return {
    state,
    async load() {
      const page = await api("GET", path(null));
      state.items = page.items;
      state.next = page.next_cursor;
      return state;
    },
    async more() {
      const page = await api("GET", path(state.next));
      state.items = state.items.concat(page.items);
      state.next = page.next_cursor;
      return state;
    },
  };
}

/** Lines of a textarea or a comma list, trimmed, empty ones dropped. */
export const listOf = (text) =>
  text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);

/** A number input's value, or null when empty. */
export const numberOf = (control) => (control.value.trim() === "" ? null : Number(control.value));

/** A card with its heading, for the sections of an object's page; `kids` follow the heading. */
export function section(title, ...kids) {
  const heading = h("h2", { id: uid(), text: title });
  return h("section", { class: "card", "aria-labelledby": heading.id }, heading, kids);
}
