// The wizard shell: sign-in, the step indicator, resume after reload, and one place that shows problems.
import { api, Problem, wizardPath } from "./api.js";
import { announce, btn, clear, clearErrors, h, placeErrors, setFieldError, ul } from "./dom.js";
import { renderSessionBar, signInForm } from "./sign-in.js";
import * as keys from "./steps/keys.js";
import * as monitoring from "./steps/monitoring.js";
import * as review from "./steps/review.js";
import * as security from "./steps/security.js";
import * as services from "./steps/services.js";
import * as testing from "./steps/testing.js";

const STEPS = [
  ["services", "Services", "Choose services", services],
  ["security", "Security", "Configure security", security],
  ["keys", "Keys", "Enter or generate keys", keys],
  ["testing", "Testing", "Test and verify", testing],
  ["monitoring", "Monitoring", "Set up monitoring", monitoring],
  ["review", "Review", "Review and commit", review],
];
const at = (id) => STEPS.findIndex((s) => s[0] === id);
const main = document.getElementById("main");
const nav = document.getElementById("steps");
const who = document.getElementById("who");
let session = null;

// Only the wizard's id is remembered (per tenant, and in the URL), never anything it holds.
const storeKey = () => `kw.wizard:${session.tenant_id}`;
const setHash = (id) => history.replaceState(null, "", id ? `#wizard=${id}` : location.pathname);
const viewStep = () => (ctx.state.status === "committed" ? "review" : ctx.state.current_step);
const alertBox = () => main.querySelector(".alert");

function showAlert(text, extra = []) {
  clear(alertBox(), text, extra.length ? ul(extra.map((m) => h("li", { text: m }))) : null).hidden = false;
}

function fail(err, root = main) {
  if (!(err instanceof Problem)) {
    console.error(err);
    err = new Problem(0, { detail: "Something went wrong in this page. Reload it to continue." });
  }
  if (err.status === 401)
    return signIn("Your session has ended. Sign in again to continue where you left off.");
  clearErrors(root);
  const rest = placeErrors(root, err.errors);
  showAlert(`${err.title ? `${err.title}. ` : ""}${err.message}`, rest);
  (root.querySelector("[aria-invalid]") || alertBox()).scrollIntoView({ block: "center" });
}

async function busy(button, fn) {
  button.disabled = true;
  try {
    return await fn();
  } finally {
    button.disabled = false;
  }
}

export const ctx = {
  state: null,
  catalogue: null,
  config: null,
  Problem,
  api,
  fail,
  busy,
  announce,
  service: (id) => ctx.catalogue.services.find((s) => s.id === id),
  name: (id) => ctx.service(id)?.name || id,
  path: (rest) => wizardPath(ctx.state.id, rest),
  /** Takes a new state; re-renders when the server moved to another step, or when asked. */
  update(state, rerender) {
    const before = viewStep();
    ctx.state = state;
    if (before !== viewStep()) return show(before);
    renderNav();
    if (rerender) show(null, true);
  },
  /** One wizard call: on success its state is taken, on failure the problem is shown next to `root`'s fields. */
  async send(method, rest, body, root = main) {
    clearErrors(root);
    alertBox().hidden = true;
    try {
      const res = await api(method, ctx.path(rest), body);
      if (res?.state || res?.id) ctx.update(res.state || res);
      return res;
    } catch (err) {
      fail(err, root);
    }
  },
  navigate: (step) => ctx.send("POST", "/navigate", { step }),
  startNew,
};

function renderWho() {
  renderSessionBar(who, session, () => signIn("You are signed out."));
}

function renderNav() {
  const s = ctx.state;
  const cur = at(viewStep());
  const far = s.status === "committed" ? -1 : at(s.furthest_step);
  const items = STEPS.map(([id, short], i) => {
    const done = s.status === "committed" || (i < far && (id === "review" || s.steps[id]));
    const label = i === cur ? "current" : done ? "completed" : i <= far ? "available" : "not reached yet";
    const b = btn("", () => (i === cur ? main.querySelector("h1").focus() : ctx.navigate(id)));
    b.disabled = i !== cur && i > far;
    if (i === cur) b.setAttribute("aria-current", "step");
    b.append(
      h("span", { class: "num", "aria-hidden": "true", text: done && i !== cur ? "✓" : i + 1 }),
      h("span", { class: "sr", text: `Step ${i + 1}: ` }),
      short,
      h("span", { class: "sr", text: ` (${label})` }),
    );
    return h("li", { class: i === cur ? "cur" : done ? "done" : "" }, b);
  });
  clear(nav, h("nav", { "aria-label": "Wizard steps" }, h("ol", {}, items)));
}

function page(title, kids, focus = true) {
  const heading = h("h1", { id: "step-title", tabindex: "-1", text: title });
  clear(main, heading, h("div", { class: "alert", role: "alert", hidden: true }), kids);
  if (focus) heading.focus();
}

function show(leaving, keepFocus) {
  if (leaving) STEPS[at(leaving)][3].leave?.();
  renderWho();
  renderNav();
  const i = at(viewStep());
  const body = h("div", { class: "body" });
  page(`Step ${i + 1} of 6: ${STEPS[i][2]}`, body, !keepFocus);
  STEPS[i][3].render(body, ctx);
}

function setState(state) {
  const leaving = ctx.state ? viewStep() : null;
  ctx.state = state;
  localStorage.setItem(storeKey(), state.id);
  setHash(state.id);
  show(leaving);
}

async function startNew() {
  try {
    setState(await api("POST", "/api/v1/wizard", {}));
    announce("A new wizard has started.");
  } catch (err) {
    fail(err);
  }
}

function message(title, text, action) {
  nav.replaceChildren();
  page(title, h("p", { class: "actions" }, action));
  showAlert(text);
}

async function openWizard() {
  renderWho();
  try {
    if (!ctx.catalogue) {
      [ctx.catalogue, ctx.config] = await Promise.all([
        api("GET", "/api/wizard/api-keys/services"),
        api("GET", "/api/wizard/security-configurations"),
      ]);
    }
    const linked = new URLSearchParams(location.hash.slice(1)).get("wizard");
    const id = linked || localStorage.getItem(storeKey());
    if (!id) return await startNew();
    try {
      return setState(await api("GET", wizardPath(id)));
    } catch (err) {
      if (err.status !== 404) throw err;
      // Unknown, expired and other tenants' wizards all answer 404: say so rather than guess which.
      if (localStorage.getItem(storeKey()) === id) localStorage.removeItem(storeKey());
      setHash(null);
      if (!linked) return await startNew();
      message(
        "Wizard not found",
        "This wizard does not exist, has expired, or belongs to another tenant. You can only open wizards of the tenant you are signed in to.",
        btn("Start a new wizard", startNew),
      );
    }
  } catch (err) {
    if (err.status === 401) return signIn("Your session has ended. Sign in again.");
    message("Something went wrong", err.message, btn("Try again", openWizard));
  }
}

function signIn(note) {
  session = ctx.state = null;
  renderWho();
  nav.replaceChildren();
  const { form, focus } = signInForm({
    busy,
    showProblem: showAlert,
    onSignedIn: async (signedIn) => {
      session = signedIn;
      await openWizard();
    },
  });
  page("Sign in to the setup wizard", form, !!note);
  if (note) showAlert(note);
  else focus();
}

async function boot() {
  try {
    session = await api("GET", "/api/v1/auth/session");
  } catch (err) {
    if (err.status === 401 || err.status === 403) return signIn(err.status === 403 ? err.message : "");
    return message("Keywarden is unavailable", err.message, btn("Try again", boot));
  }
  await openWizard();
}

// An edited field's old error no longer applies.
main.addEventListener("input", (e) => e.target.hasAttribute?.("aria-invalid") && setFieldError(e.target, ""));
boot();
