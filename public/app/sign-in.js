// The sign-in form the wizard and the console share: an admin key (and a 2FA code once enrolled) is exchanged
// for the session cookie; the page keeps neither. A key of a tenant that requires 2FA which has not enrolled
// yet is offered enrollment right here (with the typed key as a bearer token), then signs in with a code.
import { api } from "./api.js";
import { announce, btn, clear, codeInput, field, h, input, setFieldError, uid } from "./dom.js";

/** The form; `onSignedIn(session)` runs after a successful exchange, `showProblem(text)` after a refusal. */
export function signInForm({ onSignedIn, showProblem, busy }) {
  const key = input({ type: "password", name: "key" });
  const totp = codeInput({ name: "totp" });
  const submit = h("button", { class: "primary", text: "Sign in" });
  const form = h(
    "form",
    {
      class: "card narrow",
      noValidate: true,
      onsubmit: (e) => {
        e.preventDefault();
        busy(submit, async () => {
          try {
            const code = totp.value.trim();
            const session = await api("POST", "/api/v1/auth/session", {
              key: key.value.trim(),
              ...(code ? { totp: code } : {}),
            });
            key.value = totp.value = "";
            await onSignedIn(session);
          } catch (err) {
            // 403 naming `totp`: the tenant requires 2FA and this key has not enrolled (src/auth/second-factor.ts).
            if (err.status === 403 && err.errors?.[0]?.path === "totp")
              return offerEnrollment(form, key, totp, busy, showProblem);
            setFieldError(err.errors?.[0]?.path === "totp" ? totp : key, err.errors?.[0]?.message);
            showProblem(err.message);
            key.focus();
          }
        });
      },
    },
    field("Admin key", key, {
      path: "key",
      hint: "A key of your tenant with the wizard scope. It is exchanged for a 15-minute session cookie; this page does not keep it.",
    }),
    field("Two-factor code", totp, {
      path: "totp",
      hint: "The 6-digit code from your authenticator app, once 2FA is enrolled for this key.",
    }),
    h("p", { class: "actions" }, submit),
  );
  return { form, focus: () => key.focus() };
}

/**
 * Enrollment before the first sign-in: the key in the form authenticates the enroll and confirm calls as
 * `Authorization: Bearer` (held only in this closure until the panel goes away), then the admin signs in with
 * the next code.
 */
async function offerEnrollment(form, key, totp, busy, showProblem) {
  form.parentElement.querySelector(".enroll-offer")?.remove();
  const { totpEnrollment } = await import("../console/totp.js");
  const bearer = { authorization: `Bearer ${key.value.trim()}` };
  const heading = h("h2", { id: uid(), tabindex: "-1", text: "Set up two-factor sign-in" });
  const { panel, start } = totpEnrollment({
    headers: bearer,
    busy,
    showProblem,
    onConfirmed: () => {
      section.remove();
      totp.value = "";
      setFieldError(totp, "");
      totp.focus();
      announce("Enrolled. Wait for the next code in your app, type it and sign in.");
    },
  });
  const begin = h("button", { class: "primary", text: "Set up two-factor sign-in" });
  begin.addEventListener("click", () =>
    busy(begin, async () => {
      if (await start()) begin.closest("p")?.remove();
    }),
  );
  const section = h(
    "section",
    { class: "card narrow enroll-offer", "aria-labelledby": heading.id },
    heading,
    h("p", {
      text: "This tenant requires two-factor sign-in, and this key has not enrolled an authenticator yet. Enroll it now with the key you typed; then sign in with the next code.",
    }),
    h("p", { class: "actions" }, begin),
    panel,
  );
  form.after(section);
  heading.focus();
}

/** The header's tenant and sign-out button; empty when signed out. `onSignedOut` runs after signing out. */
export function renderSessionBar(container, session, onSignedOut) {
  clear(
    container,
    session && [
      h("span", { text: `Tenant ${session.tenant_id}` }),
      btn("Sign out", async () => {
        await api("DELETE", "/api/v1/auth/session").catch(() => null);
        onSignedOut();
      }),
    ],
  );
}
