import { describe, expect, inject, it } from "vitest";
import { call, createTenant } from "../helpers/api";
import { inOneWindow } from "../setup/limiter-window";

describe("per-tenant request budget (threat model case 23)", () => {
  it("is 600 requests a minute per tenant in wrangler.toml", () => {
    const tenantLimiter = inject("wranglerRatelimits").find(
      (binding) => binding.name === "TENANT_RATE_LIMITER",
    );
    expect(tenantLimiter?.simple).toEqual({ limit: 600, period: 60 });
  });

  // This file's project runs the same limiter with a small limit (vitest.config.ts TEST_TENANT_LIMIT),
  // so 10x the limit is 60 requests rather than 6,000: the same code path, in a fraction of a second.
  it("answers a burst of 10x the limit with exactly the limit served, 429 and Retry-After for the rest, while another tenant is unaffected", async () => {
    const limit = inject("testTenantLimit");
    const { statuses, retryAfter, quietStatus } = await inOneWindow(60, async () => {
      const noisy = await createTenant("noisy");
      const quiet = await createTenant("quiet");
      const statuses: number[] = [];
      const retryAfter = new Set<string | null>();
      for (let batch = 0; batch < 10; batch++) {
        const responses = await Promise.all(
          Array.from({ length: limit }, () => call("GET", "/api/v1/keys?limit=1", { key: noisy.adminKey })),
        );
        for (const response of responses) {
          statuses.push(response.status);
          if (response.status === 429) retryAfter.add(response.headers.get("retry-after"));
          await response.body?.cancel();
        }
      }
      const other = await call("GET", "/api/v1/keys?limit=1", { key: quiet.adminKey });
      await other.body?.cancel();
      return { statuses, retryAfter, quietStatus: other.status };
    });
    expect(statuses).toHaveLength(10 * limit);
    // Creating the tenant spent none of its budget: exactly the first `limit` requests are served.
    expect(statuses.slice(0, limit)).toEqual(Array(limit).fill(200));
    expect(statuses.slice(limit)).toEqual(Array(9 * limit).fill(429));
    expect([...retryAfter]).toEqual(["60"]);
    expect(quietStatus).toBe(200);
  });

  it("throttles repeated failed authentication from one address", async () => {
    // A burst straddling a limiter window is redone from another address (limiter-window.ts).
    let attempt = 0;
    const statuses = await inOneWindow(60, async () => {
      const statuses: number[] = [];
      attempt += 1;
      for (let i = 0; i < 40; i++) {
        const response = await call("GET", "/api/v1/keys", {
          headers: {
            authorization: "Bearer kw_live_nothingHereAAAAAAAAAAAAAAAAAAAAA",
            "cf-connecting-ip": `192.0.2.${100 - attempt}`,
          },
        });
        statuses.push(response.status);
      }
      return statuses;
    });
    expect(statuses.slice(0, 30).every((s) => s === 401)).toBe(true);
    expect(statuses.slice(30).every((s) => s === 429)).toBe(true);
    const otherAddress = await call("GET", "/api/v1/keys", {
      headers: {
        authorization: "Bearer kw_live_nothingHereAAAAAAAAAAAAAAAAAAAAA",
        "cf-connecting-ip": "192.0.2.100",
      },
    });
    expect(otherAddress.status).toBe(401);
  });

  it("counts forged session cookies against the same per-address failure budget", async () => {
    let attempt = 0;
    const statuses = await inOneWindow(60, async () => {
      const statuses: number[] = [];
      attempt += 1;
      for (let i = 0; i < 35; i++) {
        const response = await call("GET", "/api/v1/auth/session", {
          headers: {
            cookie: "__Host-kw_session=forged.token.value",
            "cf-connecting-ip": `192.0.2.${149 + attempt}`,
          },
        });
        statuses.push(response.status);
      }
      return statuses;
    });
    expect(statuses.slice(0, 30).every((s) => s === 401)).toBe(true);
    expect(statuses.slice(30).every((s) => s === 429)).toBe(true);
  });
});
