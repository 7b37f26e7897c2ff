import { HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { stripeKey } from "../credentials/samples";
import { call, callJson, createTenant, type TestTenant, verify } from "../helpers/api";
import { snapshotTenantRows } from "../helpers/db";
import { network } from "../setup/network";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

const stripeBalance = (status: number, body: Record<string, unknown>) =>
  http.get("https://api.stripe.com/v1/balance", ({ request }) => {
    if (!request.headers.get("authorization")?.startsWith("Bearer sk_test_"))
      return new HttpResponse(null, { status: 400 });
    return HttpResponse.json(body, { status });
  });

describe("seed wizard API", () => {
  let tenant: TestTenant;
  beforeAll(async () => {
    tenant = await createTenant("seed");
  });

  it("lists the catalogue at the seed's path and under /api/v1, filtered by category", async () => {
    const all = await callJson<{
      services: { id: string; category: string; fields: unknown[]; docs_url: string }[];
    }>("GET", "/api/wizard/api-keys/services");
    expect(all.body.services.length).toBeGreaterThanOrEqual(15);
    expect(all.body.services.map((s) => s.id)).toEqual(
      expect.arrayContaining(["stripe", "openai", "anthropic", "aws-s3"]),
    );
    const payment = await callJson<{ services: { category: string }[] }>(
      "GET",
      "/api/v1/services?category=payment",
    );
    expect(payment.body.services.length).toBeGreaterThanOrEqual(3);
    expect(new Set(payment.body.services.map((s) => s.category))).toEqual(new Set(["payment"]));
    expect((await callJson("GET", "/api/v1/services?category=nonsense")).status).toBe(422);
  });

  it("describes the three security levels with what each turns on", async () => {
    const { body } = await callJson<{
      security_levels: { id: string; key_entropy_bits: number; backup_key: boolean; requires_2fa: boolean }[];
      environments: string[];
      compliance_standards: { id: string }[];
    }>("GET", "/api/wizard/security-configurations");
    expect(body.security_levels.map((l) => [l.id, l.key_entropy_bits, l.backup_key])).toEqual([
      ["basic", 128, false],
      ["enhanced", 192, false],
      ["enterprise", 256, true],
    ]);
    expect(body.environments).toEqual(["development", "staging", "production"]);
    expect(body.compliance_standards.map((s) => s.id)).toEqual(["soc2", "gdpr", "hipaa", "pci_dss"]);
  });

  it("validates format, strength and environment without storing anything", async () => {
    const before = await snapshotTenantRows(tenant.id);
    const good = await callJson<{
      valid: boolean;
      fields: { strength: { score: number } }[];
      live_check: null;
    }>("POST", "/api/wizard/api-keys/validate", {
      key: tenant.adminKey,
      body: { service_id: "stripe", environment: "development", fields: { secret_key: stripeKey() } },
    });
    expect(good.body).toMatchObject({ valid: true, live_check: null });
    expect(good.body.fields[0]?.strength.score).toBeGreaterThan(50);
    const mismatch = await callJson<{ valid: boolean; environment: { mismatch: boolean; refused: boolean } }>(
      "POST",
      "/api/wizard/api-keys/validate",
      {
        key: tenant.adminKey,
        body: { service_id: "stripe", environment: "production", fields: { secret_key: stripeKey() } },
      },
    );
    expect(mismatch.body).toMatchObject({ valid: false, environment: { mismatch: true, refused: true } });
    expect(await snapshotTenantRows(tenant.id)).toBe(before);
  });

  it("runs the live check against the provider when asked", async () => {
    network.use(stripeBalance(200, { object: "balance", available: [], pending: [], livemode: false }));
    const valid = await callJson<{ valid: boolean; live_check: { status: string } }>(
      "POST",
      "/api/wizard/api-keys/validate",
      {
        key: tenant.adminKey,
        body: {
          service_id: "stripe",
          environment: "development",
          fields: { secret_key: stripeKey() },
          live_check: true,
        },
      },
    );
    expect(valid.body).toMatchObject({ valid: true, live_check: { status: "valid" } });
    network.use(
      stripeBalance(401, { error: { type: "invalid_request_error", message: "Invalid API Key provided" } }),
    );
    const invalid = await callJson<{ valid: boolean; live_check: { status: string } }>(
      "POST",
      "/api/wizard/api-keys/validate",
      {
        key: tenant.adminKey,
        body: {
          service_id: "stripe",
          environment: "development",
          fields: { secret_key: stripeKey() },
          live_check: true,
        },
      },
    );
    expect(invalid.body).toMatchObject({ valid: false, live_check: { status: "invalid" } });
  });

  it("generates one scoped key per service, the catalogue's generatable secrets, and a backup key at enterprise", async () => {
    const response = await callJson<{
      generated_keys: {
        service_id: string;
        key: string;
        key_id: string;
        backup_key: { key: string } | null;
        generated_secrets: Record<string, string>;
        expires_at: string;
      }[];
    }>("POST", "/api/wizard/api-keys/generate", {
      key: tenant.adminKey,
      body: {
        service_ids: ["stripe", "razorpay"],
        security_configuration: {
          environment: "production",
          security_level: "enterprise",
          key_rotation_policy: "90_days",
        },
      },
    });
    expect(response.status).toBe(201);
    expect(response.headers.get("cache-control")).toBe("no-store");
    const [stripe, razorpay] = response.body.generated_keys;
    expect(stripe?.service_id).toBe("stripe");
    expect(razorpay?.service_id).toBe("razorpay");
    expect(stripe?.key).toMatch(/^kw_live_[0-9A-Za-z]{49}$/);
    expect(stripe?.backup_key?.key).toMatch(/^kw_live_/);
    // Stripe issues its own webhook secrets; Razorpay lets the merchant choose one, so Keywarden generates it.
    expect(stripe?.generated_secrets).toEqual({});
    expect(razorpay?.generated_secrets.webhook_secret).toMatch(/^[0-9A-Za-z]{43}$/);
    const days = (Date.parse(stripe?.expires_at as string) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(89);
    expect(days).toBeLessThanOrEqual(90);
    expect(await verify(tenant, stripe?.key as string, { scopes: ["service:stripe"] })).toMatchObject({
      valid: true,
    });
    expect(await verify(tenant, stripe?.key as string, { scopes: ["service:razorpay"] })).toMatchObject({
      code: "INSUFFICIENT_SCOPES",
    });
  });

  it("caps the rotation policy at the level's ceiling", async () => {
    const response = await callJson<{ generated_keys: { expires_at: string }[] }>(
      "POST",
      "/api/wizard/api-keys/generate",
      {
        key: tenant.adminKey,
        body: {
          service_ids: ["openai"],
          security_configuration: {
            environment: "development",
            security_level: "enhanced",
            key_rotation_policy: "custom",
            custom_rotation_days: 365,
          },
        },
      },
    );
    const days =
      (Date.parse(response.body.generated_keys[0]?.expires_at as string) - Date.now()) / 86_400_000;
    expect(Math.round(days)).toBe(90);
  });

  it("shows the caller's own tenant masked, and any other tenant as 404", async () => {
    const other = await createTenant("seed other");
    const own = await call("GET", `/api/wizard/api-keys/tenant/${tenant.id}`, { key: tenant.adminKey });
    const text = await own.text();
    expect(own.status).toBe(200);
    expect(text).not.toContain(tenant.adminKey);
    expect(JSON.parse(text).keys.length).toBeGreaterThan(0);
    const foreign = await callJson("GET", `/api/wizard/api-keys/tenant/${other.id}`, {
      key: tenant.adminKey,
    });
    const never = await callJson("GET", "/api/wizard/api-keys/tenant/ten_0000000000000000000000", {
      key: tenant.adminKey,
    });
    expect(foreign.status).toBe(404);
    expect({ ...foreign.body, request_id: 0 }).toEqual({ ...never.body, request_id: 0 });
  });
});

describe("credential live test", () => {
  it("runs the provider probe for a stored credential and stores the verdict", async () => {
    const tenant = await createTenant("probe");
    const created = await callJson<{ id: string }>("POST", "/api/v1/credentials", {
      key: tenant.adminKey,
      body: { service: "stripe", environment: "development", fields: { secret_key: stripeKey() } },
    });
    network.use(stripeBalance(200, { object: "balance", available: [], pending: [], livemode: false }));
    const tested = await callJson<{ status: string; latency_ms: number }>(
      "POST",
      `/api/v1/credentials/${created.body.id}/test`,
      {
        key: tenant.adminKey,
      },
    );
    expect(tested.body).toMatchObject({ status: "valid" });
    const detail = await callJson<{ last_test: { status: string } }>(
      "GET",
      `/api/v1/credentials/${created.body.id}`,
      {
        key: tenant.adminKey,
      },
    );
    expect(detail.body.last_test).toMatchObject({ status: "valid" });
  });
});
