// Step 1: the catalogue by category, with a category filter and a search box.
import { add, field, group, h, input, ul } from "../dom.js";

const CATEGORY = { ai: "AI" };
export const categoryName = (c) => CATEGORY[c] || `${c[0].toUpperCase()}${c.slice(1)}`;
const tag = (text) => h("span", { class: "tag", text });

export function render(body, ctx) {
  const { services, categories } = ctx.catalogue;
  const chosen = new Set(ctx.state.steps.services?.service_ids);
  const count = h("p", { class: "count", "aria-live": "polite" });
  const showCount = () => {
    count.textContent = `${chosen.size} selected${chosen.size ? `: ${[...chosen].map(ctx.name).join(", ")}` : ""}`;
  };
  const search = input({ type: "search", oninput: filter });
  const cat = h("select", { onchange: filter }, h("option", { value: "", text: "All categories" }));
  for (const c of categories) cat.append(h("option", { value: c, text: categoryName(c) }));
  const none = h("p", { class: "hint", hidden: true, text: "No service matches the filter." });
  const cards = services.map((s) => {
    const box = input({ type: "checkbox", value: s.id, checked: chosen.has(s.id) });
    box.onchange = () => {
      chosen[box.checked ? "add" : "delete"](s.id);
      showCount();
    };
    return h(
      "li",
      {
        class: "svc",
        "data-cat": s.category,
        "data-text": `${s.id} ${s.name} ${s.description}`.toLowerCase(),
      },
      field(s.name, box),
      h("p", { text: s.description }),
      h("p", { class: "hint", text: "Needs:" }),
      ul(
        s.fields.map((f) =>
          h("li", {}, f.label, tag(f.required ? "required" : "optional"), f.secret && tag("secret")),
        ),
      ),
      s.generatable.length > 0 &&
        h("p", {
          class: "hint",
          text: `Keywarden can generate: ${s.generatable.map((g) => g.field).join(", ")}`,
        }),
      h("a", {
        href: s.docs_url,
        target: "_blank",
        rel: "noopener noreferrer",
        text: `${s.name} documentation`,
      }),
    );
  });
  const sections = categories.map((c) =>
    h(
      "section",
      { "aria-label": categoryName(c) },
      h("h2", { text: categoryName(c) }),
      ul(
        cards.filter((li) => li.dataset.cat === c),
        "grid",
      ),
    ),
  );
  function filter() {
    const q = search.value.trim().toLowerCase();
    for (const li of cards)
      li.hidden = (cat.value && li.dataset.cat !== cat.value) || !li.dataset.text.includes(q);
    for (const sec of sections) sec.hidden = !sec.querySelector(".svc:not([hidden])");
    none.hidden = cards.some((li) => !li.hidden);
  }
  const next = h("button", { class: "primary", text: "Continue to security" });
  const form = h(
    "form",
    {
      noValidate: true,
      onsubmit: (e) => {
        e.preventDefault();
        ctx.busy(next, () => ctx.send("PUT", "/steps/services", { service_ids: [...chosen] }, form));
      },
    },
    h("p", {
      text: "Pick the services whose credentials Keywarden should keep. Each card says what step 3 will ask for.",
    }),
    h("div", { class: "filters", role: "search" }, field("Search services", search), field("Category", cat)),
    count,
    Object.assign(group("Services", "service_ids", sections, none), { className: "plain" }),
    h("p", { class: "actions" }, next),
  );
  showCount();
  add(body, [form]);
}
