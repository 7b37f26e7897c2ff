import { describe, expect, it } from "vitest";
import { call, createTenant } from "../helpers/api";

const TENANT_LIMIT = 600; // wrangler.toml TENANT_RATE_LIMITER

describe("per-tenant request budget (SECURITY.md case 23)", () => {
  it("answers a burst of 10x the limit with 429 and Retry-After, while another tenant is unaffected", async () => {
    const noisy = await createTenant("noisy");
    const quiet = await createTenant("quiet");
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let batch = 0; batch < 10; batch++) {
      const responses = await Promise.all(
        Array.from({ length: TENANT_LIMIT }, () =>
          call("GET", "/api/v1/keys?limit=1", { key: noisy.adminKey }),
        ),
      );
      for (const response of responses) {
        statuses.push(response.status);
        if (response.status === 429) retryAfter ??= response.headers.get("retry-after");
        await response.body?.cancel();
      }
    }
    const limited = statuses.filter((s) => s === 429).length;
    // The limiter's fixed window may roll over once during the burst, granting one more budget.
    expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(2 * TENANT_LIMIT);
    expect(limited).toBeGreaterThanOrEqual(8 * TENANT_LIMIT);
    expect(statuses.every((s) => s === 200 || s === 429)).toBe(true);
    expect(Number(retryAfter)).toBeGreaterThan(0);
    const other = await call("GET", "/api/v1/keys?limit=1", { key: quiet.adminKey });
    expect(other.status).toBe(200);
  });

  it("throttles repeated failed authentication from one address", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) {
      const response = await call("GET", "/api/v1/keys", {
        headers: {
          authorization: "Bearer kw_live_nothingHereAAAAAAAAAAAAAAAAAAAAA",
          "cf-connecting-ip": "192.0.2.99",
        },
      });
      statuses.push(response.status);
    }
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
    const statuses: number[] = [];
    for (let i = 0; i < 35; i++) {
      const response = await call("GET", "/api/v1/auth/session", {
        headers: { cookie: "__Host-kw_session=forged.token.value", "cf-connecting-ip": "192.0.2.150" },
      });
      statuses.push(response.status);
    }
    expect(statuses.slice(0, 30).every((s) => s === 401)).toBe(true);
    expect(statuses.slice(30).every((s) => s === 429)).toBe(true);
  });
});
