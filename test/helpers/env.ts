import { env } from "cloudflare:workers";
import type { Bindings } from "../../src/env";

/** The project's env with some settings replaced; `undefined` removes one (a secret deleted). */
export function envWith(overrides: Record<string, string | undefined>): Bindings {
  const copy: Record<string, unknown> = { ...env, ...overrides };
  for (const [name, value] of Object.entries(overrides)) if (value === undefined) delete copy[name];
  return copy as unknown as Bindings;
}
