// Two-factor (TOTP, RFC 6238) enrollment in the page: the otpauth:// URI drawn as a QR code with
// qrcode-generator (served from this origin by scripts/build-assets.mjs, so no external service ever sees the
// secret), the secret as text for manual entry, and the first code to confirm. Used by the Security page (with
// the session) and by the sign-in form (with the typed key as a bearer token, before any session exists).
import { api } from "../app/api.js";
import { announce, codeInput, field, h, setFieldError } from "../app/dom.js";
import { qrcode } from "../vendor/qrcode.mjs";

const SVG = "http://www.w3.org/2000/svg";

const svg = (tag, attrs) => {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
};

/** `text` as a QR code: an SVG of one path, built with DOM calls (no markup parsed, no inline style). */
export function qrSvg(text, label) {
  const qr = qrcode(0, "M");
  qr.addData(text);
  qr.make();
  const n = qr.getModuleCount();
  const quiet = 4; // the quiet zone ISO/IEC 18004 asks for
  let d = "";
  for (let row = 0; row < n; row++)
    for (let col = 0; col < n; col++) if (qr.isDark(row, col)) d += `M${col + quiet} ${row + quiet}h1v1h-1z`;
  const size = n + quiet * 2;
  const image = svg("svg", {
    viewBox: `0 0 ${size} ${size}`,
    role: "img",
    "aria-label": label,
    class: "qr",
    width: 200,
    height: 200,
    "shape-rendering": "crispEdges",
  });
  image.append(svg("rect", { width: size, height: size, fill: "#fff" }), svg("path", { d, fill: "#000" }));
  return image;
}

/** The secret in groups of four, as authenticator apps show and accept it. */
const grouped = (secret) => secret.replace(/(.{4})(?=.)/g, "$1 ");

/**
 * The enrollment panel. `headers` authenticates the two calls (empty: the session cookie); `busy(button, fn)`
 * disables a button while it works; `showProblem(text)` reports a refusal; `onConfirmed()` runs once the
 * first code was accepted. Returns `{ panel, start }`: `start()` asks the server for a new secret.
 */
export function totpEnrollment({ headers = {}, busy, showProblem, onConfirmed }) {
  const panel = h("div", { class: "totp-enroll" });
  const start = async () => {
    let enrollment;
    try {
      enrollment = await api("POST", "/api/v1/auth/totp/enroll", undefined, headers);
    } catch (err) {
      showProblem(err.message);
      return false;
    }
    const code = codeInput({ name: "totp-confirm" });
    const confirm = h("button", { class: "primary", text: "Confirm enrollment" });
    const form = h(
      "form",
      {
        noValidate: true,
        "aria-label": "Confirm two-factor enrollment",
        onsubmit: (e) => {
          e.preventDefault();
          busy(confirm, async () => {
            setFieldError(code, "");
            try {
              await api("POST", "/api/v1/auth/totp/confirm", { code: code.value.trim() }, headers);
            } catch (err) {
              setFieldError(code, err.errors?.find((x) => x.path === "code")?.message ?? "");
              showProblem(err.message);
              code.focus();
              return;
            }
            panel.replaceChildren(
              h("p", { class: "okline", text: "Two-factor sign-in is enrolled for this key." }),
            );
            announce("Two-factor sign-in enrolled.");
            await onConfirmed();
          });
        },
      },
      field("Code from your authenticator app", code, {
        path: "code",
        hint: "The 6-digit code the app shows now. Each code works once.",
      }),
      h("p", { class: "actions" }, confirm),
    );
    panel.replaceChildren(
      h(
        "ol",
        { class: "steps-list" },
        h("li", {
          text: "Open an authenticator app (any that supports TOTP, e.g. 1Password, Aegis, Google Authenticator) and add an account by scanning this code.",
        }),
        h("li", {}, "Then type the 6-digit code it shows and confirm."),
      ),
      h(
        "div",
        { class: "qr-box" },
        qrSvg(enrollment.otpauth_uri, "QR code of the two-factor secret for your authenticator app"),
        h(
          "div",
          {},
          h("p", {
            class: "hint",
            text: "Cannot scan? Enter this setup key by hand (time-based, 6 digits):",
          }),
          h("p", {}, h("code", { class: "secret", "data-secret": "", text: grouped(enrollment.secret) })),
          h("p", {
            class: "hint",
            text: "Shown only now. Anyone with it can make codes for this key: do not store it next to the key.",
          }),
        ),
      ),
      form,
    );
    code.focus();
    return true;
  };
  return { panel, start };
}
