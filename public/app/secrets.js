// Key material shown once: masked until revealed, never written to storage or the URL.
import { announce, btn, h } from "./dom.js";

const mask = (v) => `${v.slice(0, Math.min(8, v.length >> 2))}${"•".repeat(16)}`;

export function secretValue(label, value) {
  const code = h("code", { class: "secret", text: mask(value) });
  const toggle = btn("Reveal", () => {
    const shown = toggle.getAttribute("aria-pressed") !== "true";
    code.textContent = shown ? value : mask(value);
    toggle.textContent = shown ? "Hide" : "Reveal";
    toggle.setAttribute("aria-pressed", String(shown));
  });
  toggle.setAttribute("aria-pressed", "false");
  const copy = btn("Copy", () =>
    navigator.clipboard.writeText(value).then(
      () => announce(`${label} copied to the clipboard.`),
      () => announce("Copying failed: reveal the value and copy it by hand."),
    ),
  );
  return h(
    "div",
    { class: "secret-row", role: "group", "aria-label": label },
    h("b", { text: label }),
    code,
    h("span", {}, toggle, copy),
  );
}

export const shownOnce = (items) =>
  items?.length
    ? h(
        "div",
        { class: "card once" },
        h(
          "p",
          { class: "warn" },
          h("strong", { text: "Shown once. " }),
          "Copy these now: Keywarden keeps only hashes or ciphertext and will not show them again.",
        ),
        items.map((k) => secretValue(k.label, k.value)),
      )
    : null;
