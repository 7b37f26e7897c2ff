// The sign-in form the wizard and the console share: an admin key (and a 2FA code once enrolled) is exchanged
// for the session cookie; the page keeps neither.
import { api } from "./api.js";
import { btn, clear, field, h, input, setFieldError } from "./dom.js";

/** The form; `onSignedIn(session)` runs after a successful exchange, `showProblem(text)` after a refusal. */
export function signInForm({ onSignedIn, showProblem, busy }) {
  const key = input({ type: "password", name: "key" });
  const totp = input({ name: "totp", inputMode: "numeric", autocomplete: "one-time-code", maxLength: 6 });
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
