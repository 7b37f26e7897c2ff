import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseKey } from "../../src/crypto/keys";
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
        expires_at: string | null;
        next_rotation_at: string;
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
    expect(stripe?.key).toMatch(/^kw_live_[0-9A-Za-z]+$/);
    expect((parseKey(stripe?.key as string)?.randomPart.length ?? 0) * Math.log2(62)).toBeGreaterThanOrEqual(
      256,
    );
    expect(stripe?.backup_key?.key).toMatch(/^kw_live_/);
    // Stripe issues its own webhook secrets; Razorpay lets the merchant choose one, so Keywarden generates it.
    expect(stripe?.generated_secrets).toEqual({});
    expect(razorpay?.generated_secrets.webhook_secret).toMatch(/^[0-9A-Za-z]{43}$/);
    // The 90-day policy schedules the key's rotation; it does not make the key expire.
    expect(stripe?.expires_at).toBeNull();
    const days = (Date.parse(stripe?.next_rotation_at as string) - Date.now()) / 86_400_000;
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
    const response = await callJson<{ generated_keys: { next_rotation_at: string }[] }>(
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
      (Date.parse(response.body.generated_keys[0]?.next_rotation_at as string) - Date.now()) / 86_400_000;
    expect(Math.round(days)).toBe(90);
  });

  it("answers the seed's own client example, with the rotation policy spelled 90-days, with 201 and the generated keys", async () => {
    const response = await callJson<{
      generated_keys: { service_id: string; key: string; next_rotation_at: string }[];
    }>("POST", "/api/wizard/api-keys/generate", {
      key: tenant.adminKey,
      body: {
        service_ids: ["stripe"],
        security_configuration: {
          environment: "production",
          security_level: "enhanced",
          key_rotation_policy: "90-days",
        },
      },
    });
    expect(response.status).toBe(201);
    expect(response.body.generated_keys.map((g) => g.service_id)).toEqual(["stripe"]);
    expect(await verify(tenant, response.body.generated_keys[0]?.key as string)).toMatchObject({
      valid: true,
    });
    const days =
      (Date.parse(response.body.generated_keys[0]?.next_rotation_at as string) - Date.now()) / 86_400_000;
    expect(Math.round(days)).toBe(90);
  });

  it("reads 30-days and 60-days as the canonical 30_days and 60_days, and still refuses unknown spellings", async () => {
    const generate = (policy: string) =>
      callJson<{ generated_keys: { key_id: string; next_rotation_at: string }[] }>(
        "POST",
        "/api/wizard/api-keys/generate",
        {
          key: tenant.adminKey,
          body: {
            service_ids: ["openai"],
            security_configuration: {
              environment: "development",
              security_level: "basic",
              key_rotation_policy: policy,
            },
          },
        },
      );
    for (const [policy, days] of [
      ["30-days", 30],
      ["60-days", 60],
      ["60_days", 60],
    ] as const) {
      const response = await generate(policy);
      expect(response.status, policy).toBe(201);
      const generated = response.body.generated_keys[0];
      expect(Math.round((Date.parse(generated?.next_rotation_at as string) - Date.now()) / 86_400_000)).toBe(
        days,
      );
      const stored = await env.DB.prepare("SELECT metadata FROM api_keys WHERE id = ?")
        .bind(generated?.key_id)
        .first<{ metadata: string }>();
      expect(JSON.parse(stored?.metadata ?? "{}").rotation_policy, policy).toBe(policy.replace("-", "_"));
    }
    for (const policy of ["90-day", "90--days", "custom-", "none-", "-90_days"]) {
      expect((await generate(policy)).status, policy).toBe(422);
    }
  });

  it("documents the seed spellings of the rotation policies in the OpenAPI schema", async () => {
    const doc = await callJson<{
      components: {
        schemas: Record<string, { properties: Record<string, { properties: Record<string, unknown> }> }>;
      };
    }>("GET", "/api/openapi.json");
    const policy = doc.body.components.schemas.GenerateKeys?.properties.security_configuration?.properties
      .key_rotation_policy as { enum: string[]; description: string };
    expect(policy.enum).toEqual([
      "30_days",
      "60_days",
      "90_days",
      "custom",
      "none",
      "30-days",
      "60-days",
      "90-days",
    ]);
    expect(policy.description).toContain("`90-days` for `90_days`");
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

describe("seed key generation under the tenant's committed security policy", () => {
  /** A policy row as a wizard commit writes it. */
  async function tenantWithPolicy(name: string, policy: string) {
    const tenant = await createTenant(name);
    await env.DB.prepare(
      `INSERT INTO security_policies (tenant_id, security_level, environment, rotation_policy, rotation_days,
         ip_allowlist, country_allowlist, require_2fa, compliance, wizard_id, updated_at)
       VALUES (?, ${policy}, '[]', 0, '[]', 'fixture', ?)`,
    )
      .bind(tenant.id, Date.now())
      .run();
    return tenant;
  }
  // Calls come from inside the policy's allowlist.
  const fromAllowlist = { "cf-connecting-ip": "198.51.100.7" };

  it("raises a lower requested level to the policy's, with its backup key and rotation ceiling, and inherits the policy's IP allowlist", async () => {
    const tenant = await tenantWithPolicy(
      "seed under policy",
      `'enterprise', 'production', '90_days', 90, '["198.51.100.0/24"]'`,
    );
    const response = await callJson<{
      generated_keys: {
        key_id: string;
        key: string;
        backup_key: { id: string; key: string } | null;
        security_level: string;
        next_rotation_at: string | null;
      }[];
    }>("POST", "/api/wizard/api-keys/generate", {
      key: tenant.adminKey,
      headers: fromAllowlist,
      body: {
        service_ids: ["stripe"],
        security_configuration: {
          environment: "production",
          security_level: "basic",
          key_rotation_policy: "none",
        },
      },
    });
    expect(response.status).toBe(201);
    const [generated] = response.body.generated_keys;
    expect(generated?.security_level).toBe("enterprise");
    expect(generated?.backup_key).not.toBeNull();
    expect(
      (parseKey(generated?.key as string)?.randomPart.length ?? 0) * Math.log2(62),
    ).toBeGreaterThanOrEqual(256);
    // "none" is not allowed at enterprise: the level's 90-day ceiling applies.
    expect(Math.round((Date.parse(generated?.next_rotation_at as string) - Date.now()) / 86_400_000)).toBe(
      90,
    );
    const { results } = await env.DB.prepare(
      "SELECT security_level, ip_allowlist FROM api_keys WHERE id IN (?, ?)",
    )
      .bind(generated?.key_id, generated?.backup_key?.id)
      .all<{ security_level: string; ip_allowlist: string }>();
    expect(results).toHaveLength(2);
    for (const row of results) {
      expect(row.security_level).toBe("enterprise");
      expect(JSON.parse(row.ip_allowlist)).toEqual(["198.51.100.0/24"]);
    }
    expect(await verify(tenant, generated?.key as string, {}, fromAllowlist)).toMatchObject({ valid: true });
  });

  it("keeps a requested level above the policy's floor, and adds no allowlist the policy does not have", async () => {
    const tenant = await tenantWithPolicy("seed above floor", `'basic', 'development', 'none', NULL, '[]'`);
    const response = await callJson<{ generated_keys: { key_id: string; security_level: string }[] }>(
      "POST",
      "/api/wizard/api-keys/generate",
      {
        key: tenant.adminKey,
        body: {
          service_ids: ["openai"],
          security_configuration: {
            environment: "development",
            security_level: "enhanced",
            key_rotation_policy: "30_days",
          },
        },
      },
    );
    expect(response.status).toBe(201);
    expect(response.body.generated_keys[0]?.security_level).toBe("enhanced");
    const row = await env.DB.prepare("SELECT security_level, ip_allowlist FROM api_keys WHERE id = ?")
      .bind(response.body.generated_keys[0]?.key_id)
      .first<{ security_level: string; ip_allowlist: string | null }>();
    expect(row).toEqual({ security_level: "enhanced", ip_allowlist: null });
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
