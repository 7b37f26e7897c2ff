// The client's TypeScript types (packages/client/src/api-types.ts) from its committed OpenAPI document,
// with openapi-typescript 7 (installed with its own TypeScript 5.9 in packages/client: the root tsc has no
// JS API). `redocly lint` has already judged the document, so this runs silently.
//
//   node scripts/client-types.mjs            # writes the types
//   node scripts/client-types.mjs --check    # fails when the committed types are not what it would write
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const ROOT = resolve(fileURLToPath(new URL("..", import.meta.url)));
const DOCUMENT = join(ROOT, "packages/client/openapi.json");
const TYPES = join(ROOT, "packages/client/src/api-types.ts");

const {
  default: openapiTS,
  astToString,
  COMMENT_HEADER,
} = await import(
  pathToFileURL(join(ROOT, "packages/client/node_modules/openapi-typescript/dist/index.mjs")).href
);

const { values } = parseArgs({ options: { check: { type: "boolean", default: false } } });
const ast = await openapiTS(pathToFileURL(DOCUMENT), {
  // Defaults appear only in request schemas (zod's .default()): a field the server defaults is optional
  // to send. openapi-typescript's default would make it required.
  defaultNonNullable: false,
  silent: true,
});
const text = `${COMMENT_HEADER}${astToString(ast)}`;

if (values.check) {
  if (readFileSync(TYPES, "utf8") !== text) {
    process.stderr.write(
      "packages/client/src/api-types.ts is not generated from packages/client/openapi.json: run npm run client:generate\n",
    );
    process.exit(1);
  }
} else {
  writeFileSync(TYPES, text);
  process.stderr.write(`wrote ${TYPES.slice(ROOT.length + 1)}\n`);
}
