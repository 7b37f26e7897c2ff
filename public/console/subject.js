// Pieces the console pages share: times, state badges, section cards, list inputs, a disclosure button, an
// inline confirmation and a filtered paged list; and, for keys and credentials (the two kinds of object an
// alert links to), the rotation summary and the step-up code field.
import { api, Problem, TOTP_HEADER } from "../app/api.js";
import { announce, btn, clear, codeInput, field, h, placeErrors, setFieldError, uid } from "../app/dom.js";

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
  const control = codeInput({ name: "totp" });
  const wrap = field("Two-factor code", control, { path: "totp", hint });
  return {
    el: wrap,
    value: () => control.value.trim(),
    headers() {
      const code = control.value.trim();
      return code ? { [TOTP_HEADER]: code } : {};
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
 * A refused form: each problem with a `path` next to its control, the message and the other problems in the
 * page's alert, focus on the first control marked invalid. A 401 without field problems (the session ended)
 * and anything that is not a problem go to the page as they are.
 */
export function formRefused(ui, form, err) {
  if (!(err instanceof Problem) || (err.status === 401 && !err.errors.length)) return ui.fail(err);
  const rest = placeErrors(form, err.errors);
  // Status 0: a message for the alert only (a 401 here is a wrong code, not the end of the session).
  ui.fail(new Problem(0, { detail: [err.message, ...rest].join(" ") }));
  form.querySelector("[aria-invalid]")?.focus();
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
 * A button that asks before acting: the first press shows the question with `confirm` and `cancel` buttons
 * next to it (keyboard focus moves to the confirm button; Escape or `cancel` goes back); `act` runs on confirm,
 * a failure is shown in the page's alert.
 */
export function confirmButton(ui, label, { question, confirm, ariaLabel, cancel = "Cancel", cls, act }) {
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
      } catch (err) {
        ui.fail(err);
      } finally {
        yes.disabled = no.disabled = false;
      }
    },
    "danger",
  );
  const no = btn(cancel, close);
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

/** A button whose action runs with the button disabled; a failure is shown in the page's alert. */
export function actionButton(ui, label, act) {
  const button = btn(label, () =>
    ui.busy(button, async () => {
      try {
        await act();
      } catch (err) {
        ui.fail(err);
      }
    }),
  );
  return button;
}

/**
 * A button that shows and hides `box` (closed at first; `aria-expanded`, `aria-controls`); opening it moves
 * focus to the box's first input.
 */
export function disclosure(label, box) {
  box.id ||= uid();
  box.hidden = true;
  const button = btn(label, () => {
    const open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", String(open));
    box.hidden = !open;
    if (open) box.querySelector("input")?.focus();
  });
  button.setAttribute("aria-expanded", "false");
  button.setAttribute("aria-controls", box.id);
  return button;
}

/**
 * A button that opens a form below its paragraph and hides while the form is open: `make(close)` builds the
 * form, whose Cancel calls `close` (the form goes, the button comes back with focus). Opening focuses the
 * form's first control.
 */
export function formOpener(label, make, cls) {
  const open = btn(
    label,
    () => {
      open.hidden = true;
      const form = make(() => {
        form.remove();
        open.hidden = false;
        open.focus();
      });
      open.parentElement.after(form);
      form.querySelector("select, input")?.focus();
    },
    cls,
  );
  return open;
}

/** How long typing in a search field pauses before the list asks the API again. */
const SEARCH_PAUSE_MS = 300;

/**
 * A list filtered by its API route and read page by page through the route's cursor: a count (a status
 * message), the items and a "Load more <noun>s" button. `path(cursor)` builds a page's URL from the filters'
 * current values; `paint(items)` returns what the body shows. `load()` starts over from the first page (call it
 * when a filter changes; `loadSoon()` waits until typing pauses). An answer to an older `load()` or "Load more"
 * that arrives after a newer `load()` started is dropped, so the list always matches the filters shown.
 * Returns `{ parts, load, loadSoon }`; `parts` go into the page.
 */
export function filteredList(ui, { noun, path, paint }) {
  const count = h("p", { class: "count", role: "status" });
  const body = h("div", {}, h("p", { text: "Loading…" }));
  let items = [];
  let next = null;
  let generation = 0;
  /** The page at `cursor`, or null when a newer load started meanwhile (its answer, or failure, is stale). */
  const read = async (cursor) => {
    const mine = generation;
    try {
      const page = await api("GET", path(cursor));
      return mine === generation ? page : null;
    } catch (err) {
      if (mine === generation) throw err;
      return null;
    }
  };
  const show = () => {
    count.textContent = `${items.length} ${noun}${items.length === 1 ? "" : "s"} shown${next ? "; more can be loaded" : ""}.`;
    more.hidden = !next;
    clear(body, paint(items));
  };
  const more = actionButton(ui, `Load more ${noun}s`, async () => {
    const page = await read(next);
    if (!page) return;
    items = items.concat(page.items);
    next = page.next_cursor;
    show();
  });
  more.hidden = true;
  let timer;
  const load = async () => {
    clearTimeout(timer);
    generation += 1;
    try {
      const page = await read(null);
      if (!page) return;
      items = page.items;
      next = page.next_cursor;
      show();
    } catch (err) {
      body.replaceChildren();
      ui.fail(err);
    }
  };
  const loadSoon = () => {
    clearTimeout(timer);
    timer = setTimeout(load, SEARCH_PAUSE_MS);
  };
  return { parts: [count, body, h("p", { class: "actions" }, more)], load, loadSoon };
}

/**
 * The filters above a filtered list: a search landmark that is never submitted (the list follows each change),
 * one column per field on a wide screen (console.css `filters3`, `filters4`).
 */
export const filterForm = (label, ...fields) =>
  h(
    "form",
    {
      role: "search",
      class: `card filters${fields.length}`,
      "aria-label": label,
      onsubmit: (e) => e.preventDefault(),
    },
    fields,
  );

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
