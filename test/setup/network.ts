/**
 * Outbound-request mock for tests that run inside workerd.
 *
 * The documented tool is `@msw/cloudflare` (developers.cloudflare.com/workers/testing/vitest-integration/
 * mock-outbound-requests/), but it is not published on the npm registry (its README installs it from
 * pkg.pr.new). Its `setupNetwork()` is a thin wrapper over msw's own network API, so this file builds the
 * same thing from `msw` alone: a FetchInterceptor source (which patches `globalThis.fetch` in this isolate)
 * plus an in-memory handler list. Same `enable` / `use` / `resetHandlers` / `disable` API, so switching to
 * the package later is a one-line import change. WebSocket mocking, which that package adds, is left out.
 */
import { FetchInterceptor } from "@mswjs/interceptors/fetch";
import { defineNetwork, InMemoryHandlersController, InterceptorSource } from "msw/experimental";

/**
 * msw types a source's interceptors as handling HTTP and WebSocket events together, which a fetch-only
 * interceptor does not satisfy at the type level (an event-map variance quirk; msw's own setups pass the
 * same object at runtime). The cast is confined to this line.
 */
type SourceInterceptor = ConstructorParameters<typeof InterceptorSource>[0]["interceptors"][number];
const fetchInterceptor = new FetchInterceptor() as unknown as SourceInterceptor;

export const network = defineNetwork({
  sources: [new InterceptorSource({ interceptors: [fetchInterceptor] })],
  handlers: new InMemoryHandlersController([]),
  context: { quiet: true },
  // A request no handler answers fails the test instead of silently reaching the real network.
  onUnhandledFrame: "error",
});
