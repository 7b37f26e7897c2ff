// A tiny element builder. Text always goes through textContent: nothing from the API is parsed as HTML.
const PROPS = new Set(["value", "checked", "disabled", "hidden", "selected", "noValidate"]);
let seq = 0;
export const uid = () => `f${++seq}`;

export function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else if (PROPS.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  return add(el, kids);
}

export function add(el, kids) {
  for (const kid of kids.flat(9)) if (kid != null && kid !== false) el.append(kid);
  return el;
}

export const clear = (el, ...kids) => {
  el.replaceChildren();
  return add(el, kids);
};
export const btn = (text, onclick, cls) => h("button", { type: "button", class: cls, text, onclick });
export const input = (props) => h("input", { autocomplete: "off", spellcheck: "false", ...props });
/** A 6-digit code field (numeric keyboard on phones; the browser may offer a one-time code). */
export const codeInput = (props = {}) =>
  input({ inputMode: "numeric", autocomplete: "one-time-code", pattern: "[0-9]{6}", maxLength: 6, ...props });
export const ul = (items, cls) => h("ul", { class: cls }, items);
export const dl = (pairs) =>
  h(
    "dl",
    {},
    pairs.map(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)]),
  );

const errSlot = (el) => {
  el.id ||= uid();
  el.setAttribute("aria-describedby", [el.getAttribute("aria-describedby"), `${el.id}-err`].join(" ").trim());
  return h("p", { class: "err", id: `${el.id}-err`, hidden: true });
};

/** A labelled control with a hint and an error slot; `path` ties it to problem+json `errors[].path`. */
export function field(label, control, { hint, path } = {}) {
  control.id ||= uid();
  if (path) control.dataset.path = path;
  const hintEl = hint && h("p", { class: "hint", id: `${control.id}-hint`, text: hint });
  if (hint) control.setAttribute("aria-describedby", hintEl.id);
  const check = control.type === "checkbox" || control.type === "radio";
  const lab = h("label", { for: control.id, text: label });
  return h(
    "div",
    { class: check ? "field check" : "field" },
    check ? [control, lab] : [lab, control],
    hintEl,
    errSlot(control),
  );
}

/** A fieldset (a radio or checkbox group) that can carry its own error. */
export function group(legend, path, ...kids) {
  const fs = h("fieldset", { "data-path": path }, h("legend", { text: legend }), kids);
  return add(fs, [errSlot(fs)]);
}

export function setFieldError(control, message) {
  const err = document.getElementById(`${control.id}-err`);
  if (message) control.setAttribute("aria-invalid", "true");
  else control.removeAttribute("aria-invalid");
  if (err) {
    err.textContent = message || "";
    err.hidden = !message;
  }
}

export function clearErrors(root) {
  for (const c of root.querySelectorAll("[aria-invalid]")) setFieldError(c, "");
}

/** Puts each `errors[].path` next to the control with the longest matching `data-path`; returns the rest. */
export function placeErrors(root, errors) {
  const rest = [];
  for (const { path = "", message } of errors) {
    const parts = String(path).split(".");
    let control = null;
    for (; parts.length && !control; parts.pop()) {
      control = root.querySelector(`[data-path="${CSS.escape(parts.join("."))}"]`);
    }
    if (control) {
      const before = document.getElementById(`${control.id}-err`)?.textContent;
      setFieldError(control, before ? `${before}; ${message}` : message);
    } else rest.push(path ? `${path}: ${message}` : message);
  }
  return rest;
}

export function announce(text) {
  const live = document.getElementById("live");
  live.textContent = "";
  setTimeout(() => {
    live.textContent = text;
  }, 50);
}
