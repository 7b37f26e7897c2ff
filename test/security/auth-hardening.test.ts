import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { clientBudgetKey } from "../../src/auth/client-address";
import { TOTP_LOCKOUT_MS, TOTP_MAX_FAILURES } from "../../src/auth/second-factor";
import { TOTP_HEADER } from "../../src/auth/step-up";
import { fromBase32, stepAt, totpAt } from "../../src/auth/totp";
import { KEY_PROPAGATION_BOUND_MS } from "../../src/keys/key-record";
import { stripeKey } from "../credentials/samples";
import { BASE, callJson, createKey, createTenant, type TestTenant } from "../helpers/api";
import { countRows } from "../helpers/db";
import { enrollTotp } from "../helpers/totp";
import { inOneWindow } from "../setup/limiter-window";

const ATTEMPT_BUDGET = 10; // wrangler.toml AUTH_ATTEMPT_LIMITER
const FAILURE_BUDGET = 30; // wrangler.toml AUTH_FAILURE_LIMITER
const NO_SUCH_KEY = "kw_live_nothingHereAAAAAAAAAAAAAAAAAAAAA";

let addressCounter = 0;
/** A client address no other test uses, so no test shares a per-client budget with another. */
const freshIp = () => `198.18.${(++addressCounter >> 8) & 255}.${addressCounter & 255}`;

interface SendOptions {
  key?: string;
  body?: unknown;
  ip?: string;
  country?: string;
  cookie?: string;
  headers?: Record<string, string>;
}

/** One request as Cloudflare's edge would hand it over: the client's address, and its country in `cf`. */
async function send<T = { code?: string; errors?: { path: string; message: string }[] }>(
  method: string,
  path: string,
  options: SendOptions = {},
) {
  const headers = new Headers(options.headers);
  headers.set("cf-connecting-ip", options.ip ?? freshIp());
  if (options.key) headers.set("authorization", `Bearer ${options.key}`);
  if (options.cookie) {
    headers.set("cookie", options.cookie);
    headers.set("origin", BASE);
  }
  if (options.body !== undefined) headers.set("content-type", "application/json");
  const response = await exports.default.fetch(
    new Request(`${BASE}${path}`, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      ...(options.country ? { cf: { country: options.country } } : {}),
    }),
  );
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: (text ? JSON.parse(text) : null) as T };
}

const signIn = (key: string, options: { totp?: string; ip?: string; country?: string } = {}) =>
  send<{ code?: string; key_id?: string }>("POST", "/api/v1/auth/session", {
    body: options.totp === undefined ? { key } : { key, totp: options.totp },
    ...(options.ip ? { ip: options.ip } : {}),
    ...(options.country ? { country: options.country } : {}),
  });

/** A 6-digit code that matches none of the steps the server accepts right now. */
async function wrongCode(secret: Uint8Array<ArrayBuffer>): Promise<string> {
  const now = stepAt(Date.now());
  const live = await Promise.all([-2, -1, 0, 1, 2].map((d) => totpAt(secret, now + d)));
  for (let n = 0; ; n++) {
    const candidate = String(n).padStart(6, "0");
    if (!live.includes(candidate)) return candidate;
  }
}

async function totpRow(keyId: string) {
  return env.DB.prepare(
    "SELECT confirmed_at, last_step, failed_attempts, locked_until FROM admin_totp WHERE key_id = ?",
  )
    .bind(keyId)
    .first<{
      confirmed_at: number | null;
      last_step: number;
      failed_attempts: number;
      locked_until: number | null;
    }>();
}

async function setPolicy(
  tenant: TestTenant,
  policy: { ipAllowlist?: string[]; countryAllowlist?: string[]; require2fa?: boolean },
) {
  await env.DB.prepare(
    `INSERT OR REPLACE INTO security_policies (tenant_id, security_level, environment, rotation_policy,
       rotation_days, ip_allowlist, country_allowlist, require_2fa, compliance, wizard_id, updated_at)
     VALUES (?, 'enhanced', 'production', 'manual', NULL, ?, ?, ?, '[]', 'wiz_test', 0)`,
  )
    .bind(
      tenant.id,
      JSON.stringify(policy.ipAllowlist ?? []),
      JSON.stringify(policy.countryAllowlist ?? []),
      policy.require2fa ? 1 : 0,
    )
    .run();
}

async function storeCredential(tenant: TestTenant): Promise<string> {
  const created = await callJson<{ id: string }>("POST", "/api/v1/credentials", {
    key: tenant.adminKey,
    body: { service: "stripe", environment: "development", fields: { secret_key: stripeKey() } },
  });
  expect(created.status).toBe(201);
  return created.body.id;
}

const reveal = (id: string, key: string, totp?: string) =>
  send("POST", `/api/v1/credentials/${id}/reveal`, {
    key,
    body: {},
    ...(totp === undefined ? {} : { headers: { [TOTP_HEADER]: totp } }),
  });

describe("second factor on every transport (threat model case 26)", () => {
  it("refuses a bearer reveal without a code once the key has enrolled TOTP, accepts a fresh code in the header, and refuses its replay", async () => {
    const tenant = await createTenant("case 26 bearer");
    const id = await storeCredential(tenant);
    const { secret, step } = await enrollTotp(tenant.adminKey);

    const without = await reveal(id, tenant.adminKey);
    expect(without.status).toBe(401);
    expect(without.body.code).toBe("UNAUTHENTICATED");
    expect(without.body.errors?.[0]?.path).toBe("totp");

    const code = await totpAt(secret, step + 1);
    const fresh = await send<{ fields: { secret_key: string } }>("POST", `/api/v1/credentials/${id}/reveal`, {
      key: tenant.adminKey,
      body: {},
      headers: { [TOTP_HEADER]: code },
    });
    expect(fresh.status).toBe(200);
    expect(fresh.body.fields.secret_key).toMatch(/^sk_test_/);

    const replayed = await reveal(id, tenant.adminKey, code);
    expect(replayed.status).toBe(401);
    // The code that confirmed enrollment is spent too.
    expect((await reveal(id, tenant.adminKey, await totpAt(secret, step))).status).toBe(401);
  });

  it("refuses with 403 a key that has not enrolled when the tenant's policy requires 2FA", async () => {
    const tenant = await createTenant("case 26 policy");
    const id = await storeCredential(tenant);
    await setPolicy(tenant, { require2fa: true });
    const refused = await reveal(id, tenant.adminKey);
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe("FORBIDDEN");
    // A code does not help a key that has no second factor to check it against.
    expect((await reveal(id, tenant.adminKey, "123456")).status).toBe(403);
    expect((await signIn(tenant.adminKey)).status).toBe(403);
  });

  it("lets a machine key with credentials scopes keep working in a tenant without 2FA", async () => {
    const tenant = await createTenant("case 26 machine");
    const id = await storeCredential(tenant);
    const machine = await createKey(tenant, {
      name: "deploy bot",
      scopes: ["credentials:read", "credentials:reveal"],
    });
    // Even while the tenant's admin key has enrolled TOTP: the factor belongs to a key, not to the tenant.
    await enrollTotp(tenant.adminKey);
    expect((await send("GET", "/api/v1/credentials", { key: machine.key })).status).toBe(200);
    expect((await reveal(id, machine.key)).status).toBe(200);
  });
});

describe("TOTP lockout per key (threat model case 27)", () => {
  it(`refuses even the right code after ${TOTP_MAX_FAILURES} wrong ones until the lockout ends, while another key is unaffected`, async () => {
    const tenant = await createTenant("case 27 lockout");
    const other = await createKey(tenant, { name: "second admin", role: "admin" });
    const id = await storeCredential(tenant);
    const { secret, step } = await enrollTotp(tenant.adminKey);
    const otherFactor = await enrollTotp(other.key);
    const wrong = await wrongCode(secret);

    // Wrong codes at sign-in and at step-up count against the same key.
    for (let i = 0; i < TOTP_MAX_FAILURES; i++) {
      const response =
        i % 2 === 0
          ? await signIn(tenant.adminKey, { totp: wrong })
          : await reveal(id, tenant.adminKey, wrong);
      expect(response.status).toBe(401);
    }
    const locked = await totpRow(tenant.adminKeyId);
    expect(locked?.locked_until).toBeGreaterThan(Date.now() + TOTP_LOCKOUT_MS - 60_000);
    expect(locked?.locked_until).toBeLessThanOrEqual(Date.now() + TOTP_LOCKOUT_MS);

    const right = await totpAt(secret, step + 1);
    const refused = await signIn(tenant.adminKey, { totp: right });
    expect(refused.status).toBe(429);
    expect(refused.body.code).toBe("RATE_LIMITED");
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(TOTP_LOCKOUT_MS / 1000 - 60);
    // Checked before the code is evaluated: the right code was neither spent nor counted.
    expect(await totpRow(tenant.adminKeyId)).toEqual(locked);
    expect((await reveal(id, tenant.adminKey, right)).status).toBe(429);

    // The counter is per key: the tenant's other admin key signs in as usual.
    const unaffected = await signIn(other.key, {
      totp: await totpAt(otherFactor.secret, otherFactor.step + 1),
    });
    expect(unaffected.status).toBe(201);

    // The lockout ends (moved into the past in D1, rather than waiting): the same right code now works and
    // resets the counter.
    await env.DB.prepare("UPDATE admin_totp SET locked_until = ? WHERE key_id = ?")
      .bind(Date.now() - 1, tenant.adminKeyId)
      .run();
    expect((await signIn(tenant.adminKey, { totp: right })).status).toBe(201);
    expect(await totpRow(tenant.adminKeyId)).toMatchObject({ failed_attempts: 0, locked_until: null });
  });

  it("doubles the lockout for each further run of wrong codes without a right one in between", async () => {
    const tenant = await createTenant("case 27 backoff");
    const { secret } = await enrollTotp(tenant.adminKey);
    const wrong = await wrongCode(secret);
    for (let i = 0; i < TOTP_MAX_FAILURES; i++) await signIn(tenant.adminKey, { totp: wrong });
    await env.DB.prepare("UPDATE admin_totp SET locked_until = ? WHERE key_id = ?")
      .bind(Date.now() - 1, tenant.adminKeyId)
      .run();
    for (let i = 0; i < TOTP_MAX_FAILURES; i++) {
      expect((await signIn(tenant.adminKey, { totp: wrong })).status).toBe(401);
    }
    const row = await totpRow(tenant.adminKeyId);
    expect(row?.failed_attempts).toBe(2 * TOTP_MAX_FAILURES);
    expect(row?.locked_until).toBeGreaterThan(Date.now() + 2 * TOTP_LOCKOUT_MS - 60_000);
    expect(row?.locked_until).toBeLessThanOrEqual(Date.now() + 2 * TOTP_LOCKOUT_MS);
  });

  it("counts wrong codes at enrollment confirmation, and locks it the same way", async () => {
    const tenant = await createTenant("case 27 confirm");
    const started = await send<{ secret: string }>("POST", "/api/v1/auth/totp/enroll", {
      key: tenant.adminKey,
    });
    const secret = fromBase32(started.body.secret);
    const wrong = await wrongCode(secret);
    for (let i = 0; i < TOTP_MAX_FAILURES; i++) {
      const response = await send("POST", "/api/v1/auth/totp/confirm", {
        key: tenant.adminKey,
        body: { code: wrong },
      });
      expect(response.status).toBe(422);
    }
    const right = await send("POST", "/api/v1/auth/totp/confirm", {
      key: tenant.adminKey,
      body: { code: await totpAt(secret, stepAt(Date.now())) },
    });
    expect(right.status).toBe(429);
    expect(await totpRow(tenant.adminKeyId)).toMatchObject({ confirmed_at: null, last_step: 0 });
    // The lockout is in the tenant's audit log; no code is.
    const audit = await env.DB.prepare(
      "SELECT detail FROM audit_log WHERE tenant_id = ? AND action = 'totp.lockout' AND target_id = ?",
    )
      .bind(tenant.id, tenant.adminKeyId)
      .all<{ detail: string }>();
    expect(audit.results).toHaveLength(1);
    expect(audit.results[0]?.detail).not.toContain(wrong);
  });
});

describe("guessing is throttled before the work (threat model case 27)", () => {
  /** Spends a client's whole attempt budget on sign-ins with a key that does not exist. */
  async function exhaustAttempts(ip: string) {
    for (let i = 0; i < ATTEMPT_BUDGET; i++) {
      expect((await signIn(NO_SUCH_KEY, { ip })).status).toBe(401);
    }
  }

  // The budgets are fixed 60 s wall-clock windows: each burst that must end over budget runs through
  // `inOneWindow`, which repeats it once, with fresh clients and tenants, if a window boundary fell inside it.

  it("refuses a sign-in over budget with the right key and the right code, spending neither", async () => {
    const { tenant, code, before, refused } = await inOneWindow(60, async () => {
      const tenant = await createTenant("budget sign-in");
      const { secret, step } = await enrollTotp(tenant.adminKey);
      const code = await totpAt(secret, step + 1);
      const ip = freshIp();
      await exhaustAttempts(ip);
      const before = await totpRow(tenant.adminKeyId);
      return { tenant, code, before, refused: await signIn(tenant.adminKey, { totp: code, ip }) };
    });
    expect(refused.status).toBe(429);
    expect(refused.body.code).toBe("RATE_LIMITED");
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(refused.headers.get("set-cookie")).toBeNull();
    expect(await totpRow(tenant.adminKeyId)).toEqual(before);
    // The same credentials from another client sign in.
    expect((await signIn(tenant.adminKey, { totp: code })).status).toBe(201);
  });

  it("refuses a TOTP confirmation over budget with the right code, confirming nothing", async () => {
    const { tenant, refused } = await inOneWindow(60, async () => {
      const tenant = await createTenant("budget confirm");
      const started = await send<{ secret: string }>("POST", "/api/v1/auth/totp/enroll", {
        key: tenant.adminKey,
      });
      const code = await totpAt(fromBase32(started.body.secret), stepAt(Date.now()));
      const ip = freshIp();
      await exhaustAttempts(ip);
      const refused = await send("POST", "/api/v1/auth/totp/confirm", {
        key: tenant.adminKey,
        body: { code },
        ip,
      });
      return { tenant, refused };
    });
    expect(refused.status).toBe(429);
    expect(await totpRow(tenant.adminKeyId)).toMatchObject({
      confirmed_at: null,
      last_step: 0,
      failed_attempts: 0,
    });
  });

  it("refuses a bootstrap over budget with the right token, creating nothing", async () => {
    const { tenantsBefore, refused } = await inOneWindow(60, async () => {
      const ip = freshIp();
      for (let i = 0; i < ATTEMPT_BUDGET; i++) {
        const wrong = await send("POST", "/api/v1/tenants", {
          key: "x".repeat(40),
          body: { name: "no" },
          ip,
        });
        expect(wrong.status).toBe(401);
      }
      const tenantsBefore = await countRows("tenants");
      const refused = await send("POST", "/api/v1/tenants", {
        key: env.BOOTSTRAP_TOKEN,
        body: { name: "over budget" },
        ip,
      });
      return { tenantsBefore, refused };
    });
    expect(refused.status).toBe(429);
    expect(await countRows("tenants")).toBe(tenantsBefore);
  });

  it("charges wrong bootstrap tokens to the client's failed-authentication budget", async () => {
    const statuses = await inOneWindow(60, async () => {
      const ip = freshIp();
      for (let i = 0; i < ATTEMPT_BUDGET; i++) {
        expect(
          (await send("POST", "/api/v1/tenants", { key: "y".repeat(40), body: { name: "no" }, ip })).status,
        ).toBe(401);
      }
      // What is left of the failure budget after the bootstrap failures, spent on bad bearer keys.
      const statuses: number[] = [];
      for (let i = 0; i < FAILURE_BUDGET - ATTEMPT_BUDGET + 1; i++) {
        statuses.push((await send("GET", "/api/v1/keys", { key: NO_SUCH_KEY, ip })).status);
      }
      return statuses;
    });
    expect(statuses.slice(0, -1).every((s) => s === 401)).toBe(true);
    expect(statuses.at(-1)).toBe(429);
  });

  it("counts two IPv6 addresses of one /64 as one client, and another /64 as another", async () => {
    const { overBudget, otherSite } = await inOneWindow(60, async () => {
      // A /64 of its own on each attempt: the addresses of an attempt that straddled a window stay spent.
      const group = (++addressCounter).toString(16);
      const site = `2001:db8:${group}`;
      // The third spells the same /64 with leading zeros.
      const sameSite = [
        `${site}:1::1`,
        `${site}:1:ffff:ffff:ffff:fffe`,
        `2001:0db8:${group.padStart(4, "0")}:0001::9`,
      ];
      for (let i = 0; i < ATTEMPT_BUDGET; i++) {
        const response = await signIn(NO_SUCH_KEY, { ip: sameSite[i % 2] as string });
        expect(response.status).toBe(401);
      }
      return {
        overBudget: await signIn(NO_SUCH_KEY, { ip: sameSite[2] as string }),
        otherSite: await signIn(NO_SUCH_KEY, { ip: `${site}:2::1` }),
      };
    });
    expect(overBudget.status).toBe(429);
    expect(otherSite.status).toBe(401);
  });

  it("derives one budget key per IPv4 address (however it is spelled) and per IPv6 /64", () => {
    expect(clientBudgetKey("192.0.2.7")).toBe(clientBudgetKey("::ffff:192.0.2.7"));
    expect(clientBudgetKey("192.0.2.7")).not.toBe(clientBudgetKey("192.0.2.8"));
    expect(clientBudgetKey("2001:db8:1:2::1")).toBe(clientBudgetKey("2001:db8:1:2:abcd::1"));
    expect(clientBudgetKey("2001:db8:1:2::1")).not.toBe(clientBudgetKey("2001:db8:1:3::1"));
    expect(clientBudgetKey(undefined)).toBe("unknown");
    expect(clientBudgetKey("not an address")).toBe("unknown");
  });
});

describe("management routes authorize from fresh state (threat model case 29)", () => {
  it(`refuses a revoked admin key on the very next management call while the isolate cache still holds it; verify may serve it for up to ${KEY_PROPAGATION_BOUND_MS / 1000} s`, async () => {
    const tenant = await createTenant("case 29 revoke");
    const admin = await createKey(tenant, { name: "second admin", role: "admin" });
    // Warm this isolate's cache with the key, as the caller of verify.
    const warm = await send("POST", "/api/v1/keys/verify", {
      key: admin.key,
      body: { key: tenant.adminKey },
    });
    expect(warm.status).toBe(200);
    expect((await send("GET", "/api/v1/keys", { key: admin.key })).status).toBe(200);

    // Revoked behind this isolate's back: no cache invalidation happens.
    await env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?").bind(Date.now(), admin.id).run();

    expect((await send("GET", "/api/v1/keys", { key: admin.key })).status).toBe(401);
    expect((await send("POST", "/api/v1/keys", { key: admin.key, body: { name: "x" } })).status).toBe(401);
    expect((await signIn(admin.key)).status).toBe(401);
    // The documented bound: verify reads the cached record, so within KEY_PROPAGATION_BOUND_MS it may still answer.
    const stale = await send("POST", "/api/v1/keys/verify", {
      key: admin.key,
      body: { key: tenant.adminKey },
    });
    expect(stale.status).toBe(200);
  });

  it("refuses a down-scoped admin key on the very next management call", async () => {
    const tenant = await createTenant("case 29 down-scope");
    const admin = await createKey(tenant, { name: "second admin", role: "admin" });
    expect((await send("POST", "/api/v1/keys/verify", { key: admin.key, body: { key: "x" } })).status).toBe(
      200,
    );
    expect((await send("GET", "/api/v1/audit", { key: admin.key })).status).toBe(200);

    await env.DB.prepare("UPDATE api_keys SET scopes = ? WHERE id = ?")
      .bind(JSON.stringify(["keys:read"]), admin.id)
      .run();

    const refused = await send("GET", "/api/v1/audit", { key: admin.key });
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe("FORBIDDEN");
    expect((await send("GET", "/api/v1/keys", { key: admin.key })).status).toBe(200);
  });
});

describe("browser sessions re-check the key's allowlists on every request", () => {
  async function sessionCookie(key: string, ip: string, country?: string) {
    const started = await send("POST", "/api/v1/auth/session", {
      body: { key },
      ip,
      ...(country ? { country } : {}),
    });
    expect(started.status).toBe(201);
    return (started.headers.get("set-cookie") ?? "").split(";")[0] as string;
  }

  it("refuses a session used from outside its key's IP allowlist", async () => {
    const tenant = await createTenant("session ip");
    const fenced = await createKey(tenant, {
      name: "fenced admin",
      role: "admin",
      ip_allowlist: ["203.0.113.0/24"],
    });
    const cookie = await sessionCookie(fenced.key, "203.0.113.5");
    expect((await send("GET", "/api/v1/keys", { cookie, ip: "203.0.113.77" })).status).toBe(200);
    const outside = await send("GET", "/api/v1/keys", { cookie, ip: "198.51.100.1" });
    expect(outside.status).toBe(403);
    expect(outside.body.code).toBe("FORBIDDEN");
  });

  it("refuses a session used from outside its key's country allowlist", async () => {
    const tenant = await createTenant("session country");
    const fenced = await createKey(tenant, {
      name: "fenced admin",
      role: "admin",
      country_allowlist: ["DE"],
    });
    const cookie = await sessionCookie(fenced.key, freshIp(), "DE");
    expect((await send("GET", "/api/v1/auth/session", { cookie, country: "DE" })).status).toBe(200);
    expect((await send("GET", "/api/v1/auth/session", { cookie, country: "US" })).status).toBe(403);
    expect((await send("GET", "/api/v1/auth/session", { cookie })).status).toBe(403);
  });
});

describe("the tenant policy's allowlists fence admin access, not verify", () => {
  it("refuses management calls, sign-in and sessions from outside the policy's IP allowlist, and still verifies", async () => {
    const tenant = await createTenant("policy ip");
    const service = await createKey(tenant, { name: "service key" });
    const inside = "203.0.113.20";
    const cookie = (
      (
        await send("POST", "/api/v1/auth/session", { body: { key: tenant.adminKey }, ip: inside })
      ).headers.get("set-cookie") ?? ""
    ).split(";")[0] as string;
    await setPolicy(tenant, { ipAllowlist: ["203.0.113.0/24", "2001:db8:cafe::/48"] });

    const outside = await send("GET", "/api/v1/keys", { key: tenant.adminKey, ip: "198.51.100.9" });
    expect(outside.status).toBe(403);
    expect(outside.body.code).toBe("FORBIDDEN");
    expect((await send("GET", "/api/v1/keys", { key: tenant.adminKey, ip: inside })).status).toBe(200);
    expect(
      (await send("GET", "/api/v1/keys", { key: tenant.adminKey, ip: "2001:db8:cafe:1::1" })).status,
    ).toBe(200);
    expect((await signIn(tenant.adminKey, { ip: "198.51.100.9" })).status).toBe(403);
    expect((await signIn(tenant.adminKey, { ip: inside })).status).toBe(201);
    expect((await send("GET", "/api/v1/auth/session", { cookie, ip: inside })).status).toBe(200);
    expect((await send("GET", "/api/v1/auth/session", { cookie, ip: "198.51.100.9" })).status).toBe(403);

    // Verify is not admin access: it answers from anywhere, with the verdict for the key it was given.
    const verdict = await send<{ valid: boolean }>("POST", "/api/v1/keys/verify", {
      key: tenant.adminKey,
      body: { key: service.key },
      ip: "198.51.100.9",
    });
    expect(verdict.status).toBe(200);
    expect(verdict.body.valid).toBe(true);
  });

  it("refuses management calls from outside the policy's country allowlist", async () => {
    const tenant = await createTenant("policy country");
    await setPolicy(tenant, { countryAllowlist: ["DE", "FR"] });
    expect((await send("GET", "/api/v1/keys", { key: tenant.adminKey, country: "US" })).status).toBe(403);
    expect((await send("GET", "/api/v1/keys", { key: tenant.adminKey })).status).toBe(403);
    expect((await send("GET", "/api/v1/keys", { key: tenant.adminKey, country: "FR" })).status).toBe(200);
  });
});
