// The OpenAPI document exactly as the worker serves it at GET /api/openapi.json, produced without a browser
// or a deployment: wrangler's unstable_startWorker builds src/index.ts with wrangler.toml and runs it in a
// local workerd (a throwaway D1 directory; the document route touches no storage), the script asks it for
// the document and stops it. The output depends only on the code, so it is deterministic.
//
//   node scripts/openapi-document.mjs                 # prints the document
//   node scripts/openapi-document.mjs --out <file>    # writes it (npm run client:generate does this)
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const ROOT = resolve(fileURLToPath(new URL("..", import.meta.url)));

/** Starts the worker locally, fetches its document, stops it. */
export async function servedOpenApiDocument() {
  // Only real problems on the terminal (the dev server's banner and Request.cf notices are noise here).
  process.env.WRANGLER_LOG ??= "error";
  process.env.WRANGLER_SEND_METRICS = "false";
  const { unstable_startWorker } = await import("wrangler");
  const persist = mkdtempSync(join(tmpdir(), "keywarden-openapi-"));
  try {
    const worker = await unstable_startWorker({
      config: join(ROOT, "wrangler.toml"),
      dev: {
        server: { hostname: "127.0.0.1", port: 0 },
        inspector: false,
        persist,
        watch: false,
        liveReload: false,
      },
    });
    try {
      await worker.ready;
      const response = await worker.fetch("http://127.0.0.1/api/openapi.json");
      if (!response.ok) throw new Error(`GET /api/openapi.json answered ${response.status}`);
      return await response.json();
    } finally {
      await worker.dispose();
    }
  } finally {
    rmSync(persist, { recursive: true, force: true });
  }
}

/** Two-space JSON with a final newline: the committed form of packages/client/openapi.json. */
export const documentText = (document) => `${JSON.stringify(document, null, 2)}\n`;

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { out: { type: "string" } } });
  const text = documentText(await servedOpenApiDocument());
  if (values.out) {
    writeFileSync(resolve(values.out), text);
    const operations = Object.values(JSON.parse(text).paths).flatMap(Object.keys).length;
    process.stderr.write(`wrote ${values.out} (${operations} operations)\n`);
  } else {
    process.stdout.write(text);
  }
}
