import { delay, HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { network } from "../setup/network";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

it("mocks", async () => {
  network.use(
    http.get("https://api.stripe.com/v1/balance", ({ request }) =>
      HttpResponse.json({ a: request.headers.get("authorization") }),
    ),
  );
  const r = await fetch("https://api.stripe.com/v1/balance", { headers: { authorization: "Bearer x" } });
  expect(await r.json()).toEqual({ a: "Bearer x" });
});
it("redirect manual", async () => {
  network.use(
    http.get(
      "https://api.stripe.com/v1/balance",
      () => new HttpResponse(null, { status: 302, headers: { location: "https://evil.example/" } }),
    ),
  );
  const r = await fetch("https://api.stripe.com/v1/balance", { redirect: "manual" });
  expect(r.status).toBe(302);
});
it("timeout", async () => {
  network.use(
    http.get("https://api.stripe.com/v1/balance", async () => {
      await delay(500);
      return HttpResponse.json({});
    }),
  );
  const e = await fetch("https://api.stripe.com/v1/balance", { signal: AbortSignal.timeout(50) }).catch(
    (e: unknown) => e,
  );
  expect(e).toBeInstanceOf(Error);
  expect((e as Error).name).toBe("TimeoutError");
});
it("unhandled", async () => {
  const e = await fetch("https://other.example/").catch((e: unknown) => e);
  expect(e).toBeInstanceOf(Error);
});
