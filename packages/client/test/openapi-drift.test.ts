import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import committed from "../openapi.json";

type Document = { paths: Record<string, Record<string, unknown>> } & Record<string, unknown>;

/** Each operation, and each other top-level part, that differs between two documents: short, readable. */
function differences(served: Document, stored: Document): string[] {
  const out: string[] = [];
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  for (const key of new Set([...Object.keys(served), ...Object.keys(stored)])) {
    if (key === "paths" || same(served[key], stored[key])) continue;
    if (key !== "components") {
      out.push(`#/${key}`);
      continue;
    }
    // Name the schema (or other component) that changed.
    const [a, b] = [served.components, stored.components] as Record<string, Record<string, unknown>>[];
    for (const section of new Set([...Object.keys(a ?? {}), ...Object.keys(b ?? {})])) {
      for (const name of new Set([...Object.keys(a?.[section] ?? {}), ...Object.keys(b?.[section] ?? {})])) {
        if (!same(a?.[section]?.[name], b?.[section]?.[name])) out.push(`#/components/${section}/${name}`);
      }
    }
  }
  for (const path of new Set([...Object.keys(served.paths), ...Object.keys(stored.paths)])) {
    const a = served.paths[path] ?? {};
    const b = stored.paths[path] ?? {};
    for (const method of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (!same(a[method], b[method])) {
        const state = !(method in b) ? "new" : !(method in a) ? "removed" : "changed";
        out.push(`${method.toUpperCase()} ${path} (${state})`);
      }
    }
  }
  return out;
}

describe("the client's committed OpenAPI document", () => {
  it("is exactly the document the worker serves (else: run npm run client:generate)", async () => {
    const response = await exports.default.fetch(new Request("https://keywarden.test/api/openapi.json"));
    expect(response.status).toBe(200);
    const served = (await response.json()) as Document;
    const drift = differences(served, committed as Document);
    expect(
      drift,
      "packages/client/openapi.json differs from the served document: run npm run client:generate",
    ).toEqual([]);
  });
});
