import type { Bindings } from "../env";

/**
 * Outbound fetch for provider probes. In production this is the plain global fetch. Only when the local,
 * explicitly set `PROVIDER_STANDIN_ORIGIN` is present (never in wrangler.toml; see .dev.vars.example)
 * are probe requests sent to a loopback stand-in as `<origin>/<provider host><path>`. The catalogue's
 * host allow-list is checked on the real URL before this runs.
 */
export function providerFetch(env: Pick<Bindings, "PROVIDER_STANDIN_ORIGIN">): typeof fetch {
  const standIn = env.PROVIDER_STANDIN_ORIGIN;
  if (!standIn) return (input, init) => fetch(input, init);
  const origin = new URL(standIn);
  if (origin.hostname !== "127.0.0.1" && origin.hostname !== "localhost") {
    throw new TypeError("PROVIDER_STANDIN_ORIGIN must be a loopback origin");
  }
  return (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    return fetch(`${origin.origin}/${url.host}${url.pathname}${url.search}`, init);
  };
}
