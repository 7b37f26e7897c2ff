// The operating console: the same session cookie and API as the wizard. Pages are hash routes, so the links in
// alert messages (`/console/#/alerts/<id>`, `#/keys/<id>`, `#/credentials/<id>`) open the object directly.
import { api, Problem } from "../app/api.js";
import { clear, h } from "../app/dom.js";
import { renderSessionBar, signInForm } from "../app/sign-in.js";
import { renderAlert, renderAlerts } from "./alerts.js";
import { renderAudit } from "./audit.js";
import { renderCredential, renderCredentials } from "./credentials.js";
import { renderKey, renderKeys } from "./keys.js";
import { renderChannel, renderMonitoring } from "./monitoring.js";
import { renderSecurity } from "./security.js";

const main = document.getElementById("main");
const who = document.getElementById("who");

async function busy(button, fn) {
  button.disabled = true;
  try {
    return await fn();
  } finally {
    button.disabled = false;
  }
}

const ROUTES = [
  [/^#\/keys$/, () => renderKeys(page)],
  [/^#\/keys\/([\w-]+)$/, (id) => renderKey(page, id)],
  [/^#\/credentials$/, () => renderCredentials(page)],
  [/^#\/credentials\/([\w-]+)$/, (id) => renderCredential(page, id)],
  [/^#\/alerts\/([\w-]+)$/, (id) => renderAlert(page, id)],
  [/^(?:#\/alerts)?$/, () => renderAlerts(page)],
  [/^#\/monitoring$/, () => renderMonitoring(page)],
  [/^#\/monitoring\/channels\/([\w-]+)$/, (id) => renderChannel(page, id)],
  [/^#\/audit$/, () => renderAudit(page)],
  [/^#\/security$/, () => renderSecurity(page)],
];

/** Replaces the page with a heading, an alert slot and `kids`; returns helpers the pages use. */
function page(title, ...kids) {
  const heading = h("h1", { tabindex: "-1", text: title });
  const alert = h("div", { class: "alert", role: "alert", hidden: true });
  clear(main, heading, alert, kids);
  heading.focus();
  return {
    main,
    busy,
    fail(err) {
      if (err instanceof Problem && err.status === 401)
        return signIn("Your session has ended. Sign in again.");
      if (!(err instanceof Problem)) console.error(err);
      clear(alert, err instanceof Problem ? err.message : "Something went wrong in this page.").hidden =
        false;
    },
  };
}

/** Marks the nav link of the section being shown (`#/keys/<id>` is in Keys). */
function markSection(hash) {
  const section = hash.split("/").slice(0, 2).join("/");
  for (const link of document.querySelectorAll(".console-nav a[href^='#/']")) {
    if (link.getAttribute("href") === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function route() {
  const hash = location.hash || "#/alerts";
  markSection(hash);
  for (const [pattern, render] of ROUTES) {
    const match = pattern.exec(hash);
    if (match) return render(...match.slice(1));
  }
  page("Not found", h("p", { text: "This console page does not exist." }));
}

function renderWho(session) {
  renderSessionBar(who, session, () => signIn("You are signed out."));
}

function signIn(note) {
  renderWho(null);
  const slot = page("Sign in to the console");
  const { form, focus } = signInForm({
    busy,
    showProblem: (text) => slot.fail(new Problem(0, { detail: text })),
    onSignedIn: async (session) => {
      renderWho(session);
      await route();
    },
  });
  main.append(form);
  if (note) slot.fail(new Problem(0, { detail: note }));
  else focus();
}

async function boot() {
  try {
    renderWho(await api("GET", "/api/v1/auth/session"));
  } catch (err) {
    if (err.status === 401 || err.status === 403) return signIn(err.status === 403 ? err.message : "");
    return page("Keywarden is unavailable", h("p", { text: err.message }));
  }
  await route();
}

window.addEventListener("hashchange", route);
boot();
