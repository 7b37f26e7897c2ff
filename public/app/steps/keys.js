// Step 3: each service's credentials (checked as typed, stored encrypted by the wizard), and generated keys.
import { add, btn, clear, clearErrors, dl, field, h, input, placeErrors, setFieldError, ul } from "../dom.js";
import { shownOnce } from "../secrets.js";

// Plaintext from "Generate" lives in this variable only, and is dropped when the admin leaves the step.
let generated = null;
export const leave = () => {
  generated = null;
};

const label = (svc, name) => svc.fields.find((f) => f.name === name)?.label || name;
const li = (cls, text) => h("li", { class: cls, text });

function serviceCard(ctx, svc) {
  const sec = ctx.state.steps.security;
  const saved = ctx.state.steps.keys?.services?.[svc.id];
  const controls = {};
  const meters = {};
  const notes = h("div", { "aria-live": "polite" });
  let seq = 0;
  let timer = 0;
  const values = () =>
    Object.fromEntries(Object.entries(controls).flatMap(([k, c]) => (c.value ? [[k, c.value]] : [])));
  const showNotes = (res) => {
    const items = [
      ...(res.errors || []).map((t) => li("bad", t)),
      ...(res.warnings || []).map((t) => li("warnline", `Warning: ${t}`)),
    ];
    if (res.environment?.detected)
      items.push(
        li(
          "",
          `Detected a ${res.environment.detected}-mode credential; this wizard is for ${sec.environment}.`,
        ),
      );
    clear(notes, items.length > 0 && ul(items));
  };

  // Validated as typed (debounced); only the newest answer is shown.
  async function check() {
    const fields = values();
    const mine = ++seq;
    if (!Object.keys(fields).length) return clear(notes);
    const body = {
      service_id: svc.id,
      fields,
      environment: sec.environment,
      security_level: sec.security_level,
    };
    const res = await ctx
      .api("POST", "/api/wizard/api-keys/validate", body)
      .catch((err) => ({ errors: [err.message], fields: [] }));
    if (mine !== seq) return;
    for (const f of res.fields) {
      const c = controls[f.field];
      setFieldError(c, c.value ? f.errors.join("; ") : "");
      const m = meters[f.field];
      if (!m) continue;
      m.wrap.hidden = !c.value || !f.strength;
      const score = f.strength?.score ?? 0;
      m.meter.value = score;
      const word = score >= 75 ? "strong" : score >= 40 ? "fair" : "weak";
      m.text.textContent = `Strength: ${word} (${score}/100)${f.strength?.issues?.length ? ` — ${f.strength.issues.join(", ")}` : ""}`;
    }
    showNotes(res);
  }

  const save = h("button", { class: "primary", text: `Save ${svc.name} credentials` });
  const form = h(
    "form",
    {
      class: "card svc-keys",
      "data-svc": svc.id,
      noValidate: true,
      onsubmit: (e) => {
        e.preventDefault();
        clearErrors(form);
        ctx.busy(save, async () => {
          try {
            const res = await ctx.api("POST", ctx.path(`/keys/${encodeURIComponent(svc.id)}`), {
              fields: values(),
            });
            for (const c of Object.values(controls)) c.value = "";
            ctx.update(res.state);
            const fresh = serviceCard(ctx, svc);
            form.replaceWith(fresh);
            fresh.querySelector("h2").focus();
            ctx.announce(`${svc.name} credentials saved, encrypted.`);
          } catch (err) {
            if (err.status === 401) return ctx.fail(err);
            showNotes({ errors: [err.message, ...placeErrors(form, err.errors)] });
            form.querySelector("[aria-invalid]")?.focus();
          }
        });
      },
    },
    h(
      "h2",
      { tabindex: "-1" },
      svc.name,
      h("span", {
        class: `badge ${saved?.complete ? "ok" : ""}`,
        text: saved?.complete ? "Saved" : saved ? "Incomplete" : "Not entered",
      }),
    ),
    saved && [
      dl(Object.entries(saved.fields || {}).map(([k, v]) => [label(svc, k), h("code", { text: v })])),
      h("p", { class: "hint", text: "Stored encrypted. Enter new values to replace them." }),
    ],
    svc.fields.map((f) => {
      const c = input({
        type: f.secret ? "password" : "text",
        autocapitalize: "off",
        placeholder: `shaped like ${f.example}`,
        oninput: () => {
          clearTimeout(timer);
          timer = setTimeout(check, 350);
        },
      });
      controls[f.name] = c;
      const wrap = field(`${f.label}${f.required ? "" : " (optional)"}`, c, { path: `fields.${f.name}` });
      if (f.secret) {
        const meter = h("meter", {
          min: 0,
          max: 100,
          low: 40,
          high: 75,
          optimum: 100,
          "aria-label": `${f.label} strength`,
        });
        const text = h("span");
        meters[f.name] = { meter, text, wrap: h("div", { class: "strength", hidden: true }, meter, text) };
        wrap.append(meters[f.name].wrap);
      }
      return wrap;
    }),
    notes,
    h("p", { class: "actions" }, save),
  );
  return form;
}

function generateBox(ctx) {
  const issued = Object.entries(ctx.state.steps.keys?.issued_keys || {});
  const enterprise = ctx.state.steps.security.security_level === "enterprise";
  const button = btn(issued.length ? "Generate new keys" : "Generate keys", () =>
    ctx.busy(button, async () => {
      const res = await ctx.send("POST", "/keys/generate", {});
      if (!res) return;
      generated = Object.entries(res.generated).flatMap(([id, g]) => [
        { label: `${ctx.name(id)} key`, value: g.key },
        ...(g.backup_key ? [{ label: `${ctx.name(id)} backup key`, value: g.backup_key }] : []),
        ...Object.entries(g.secrets || {}).map(([f, value]) => ({
          label: `${ctx.name(id)} ${label(ctx.service(id), f)}`,
          value,
        })),
      ]);
      // Generated secrets fill service fields: those cards show them (masked) now.
      for (const [id, g] of Object.entries(res.generated)) {
        if (Object.keys(g.secrets || {}).length)
          document.querySelector(`[data-svc="${id}"]`)?.replaceWith(serviceCard(ctx, ctx.service(id)));
      }
      const fresh = generateBox(ctx);
      box.replaceWith(fresh);
      fresh.querySelector("h2").focus();
      ctx.announce("Keys generated. They are shown once.");
    }),
  );
  const box = h(
    "section",
    { class: "card", "aria-label": "Keywarden keys" },
    h("h2", { tabindex: "-1", text: "Keywarden keys" }),
    h("p", {
      text: `One Keywarden API key per service, scoped to it, plus any secret Keywarden can generate.${enterprise ? " Enterprise adds a backup key to each." : ""}`,
    }),
    ul(
      issued.map(([id, k]) =>
        h(
          "li",
          {},
          `${ctx.name(id)}: `,
          h("code", { text: `${k.start}…` }),
          k.backup_key_id ? " and a backup key" : "",
        ),
      ),
    ),
    shownOnce(generated),
    h("p", { class: "actions" }, button),
  );
  return box;
}

export function render(body, ctx) {
  const next = btn(
    "Continue to testing",
    () => ctx.busy(next, () => ctx.send("PUT", "/steps/keys", {})),
    "primary",
  );
  add(body, [
    h("p", {
      text: `Enter each provider's credentials for ${ctx.state.steps.security.environment}. They are checked as you type and stored encrypted.`,
    }),
    ctx.state.steps.services.service_ids.map((id) => serviceCard(ctx, ctx.service(id))),
    generateBox(ctx),
    h(
      "p",
      { class: "actions" },
      btn("Back", () => ctx.navigate("security")),
      next,
    ),
  ]);
}
