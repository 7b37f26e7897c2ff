// Renders the OpenAPI document as a plain, searchable page. No CDN: everything is served from here.
const spec = await (await fetch("/api/openapi.json")).json();

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function resolve(schema) {
  const ref = schema?.$ref;
  return ref ? spec.components.schemas[ref.split("/").pop()] : schema;
}

function schemaBlock(title, schema) {
  return el("details", {}, el("summary", {}, title), el("pre", {}, JSON.stringify(resolve(schema), null, 2)));
}

const toc = document.getElementById("toc");
const main = document.getElementById("operations");
main.replaceChildren();
for (const [path, operations] of Object.entries(spec.paths)) {
  for (const [method, operation] of Object.entries(operations)) {
    const id = `${method}-${path}`.replace(/[^a-z0-9]+/gi, "-");
    toc.append(el("a", { href: `#${id}` }, `${method.toUpperCase()} ${path}`));
    const section = el(
      "section",
      { class: "op", id },
      el("h2", {}, el("span", { class: `method ${method}` }, method), " ", el("code", {}, path)),
      el("p", {}, operation.summary ?? ""),
    );
    const body = operation.requestBody?.content?.["application/json"]?.schema;
    if (body) section.append(schemaBlock("Request body", body));
    for (const parameter of operation.parameters ?? []) {
      section.append(
        el(
          "p",
          {},
          el("code", {}, `${parameter.in}: ${parameter.name}`),
          parameter.required ? " (required)" : "",
        ),
      );
    }
    for (const [status, response] of Object.entries(operation.responses ?? {})) {
      const content = response.content ?? {};
      const schema = Object.values(content)[0]?.schema;
      section.append(
        schema
          ? schemaBlock(`${status}: ${response.description}`, schema)
          : el("p", {}, `${status}: ${response.description}`),
      );
    }
    main.append(section);
  }
}
