/**
 * What the body properties act on: an api key, a credential with known plaintext versions, a wizard
 * walked to a given step, stored alert channels and rules, or a tenant's security policy. Each is made
 * in a TenantBudget's current tenant (a policy target in a new one) and charged to it.
 */
import { HttpResponse, http } from "msw";
import { afterAll, beforeAll, expect } from "vitest";
import { randomBase62 } from "../../src/crypto/random";
import type { TestTenant } from "../helpers/api";
import { network } from "../setup/network";
import { openaiKey } from "../wizard/helpers";
import { type Body, send, type TenantBudget, wizardSnapshot } from "./worker-support";

export type TargetKind =
  | "key"
  | "credential"
  | "credential-3-versions"
  | "wizard-started"
  | "wizard-at-security"
  | "wizard-at-keys"
  | "wizard-at-monitoring"
  | "monitoring-channels"
  | "monitoring-rules"
  | "security-policy";

export interface Target {
  kind: TargetKind;
  tenant: TestTenant;
  /** The api key or credential whose every column is compared before and after (null for a wizard). */
  rowId: string | null;
  wizardId: string | null;
  /** A credential's current version (the one reads, reveals and rollbacks start from). */
  version: number;
  /** A credential's revision, bumped by every change a client can see: its ETag is `"<id>.r<revision>"`. */
  revision: number;
  /** A credential's plaintext and masked display fields, by version. */
  plaintext: Map<number, Record<string, string>>;
  display: Map<number, Record<string, string>>;
  /** Ids a request body may name as `$ref:<name>` (see `bindRefs`): stored channels, a rule, a credential. */
  refs?: Record<string, string>;
  /** Stored monitoring records (a channel, a rule, the policy) as the API last showed them, by ref name. */
  views?: Record<string, Record<string, unknown>>;
}

/** The services every wizard target selects (both probes are answered by the network mock). */
export const WIZARD_SERVICES = ["stripe", "openai"] as const;
/** Basic + development: test and live keys are both accepted (a mismatch is only a warning). */
export const WIZARD_SECURITY = {
  security_level: "basic",
  environment: "development",
  rotation_policy: "none",
};

/** The strong ETag the API gives a credential target (see `etagOf` in src/credentials/credential-view.ts). */
export const etag = (target: Target) => `"${target.rowId}.r${target.revision}"`;

/** Every outbound request the worker made since the last `takeOutbound()`, as "METHOD url". */
const outbound: string[] = [];

export function takeOutbound(): string[] {
  return outbound.splice(0);
}

/** Stand-ins for the two providers the wizard targets use; they answer "valid". */
const PROVIDER_HANDLERS = [
  http.get("https://api.stripe.com/v1/balance", ({ request }) => {
    outbound.push(`GET ${request.url}`);
    return HttpResponse.json({ object: "balance", available: [], pending: [], livemode: false });
  }),
  http.get("https://api.openai.com/v1/models", ({ request }) => {
    outbound.push(`GET ${request.url}`);
    return HttpResponse.json({ object: "list", data: [{ id: "gpt-4o", object: "model" }] });
  }),
];

/**
 * The network mock for files whose endpoints call out (live checks, channel tests). Every other
 * request is recorded and answered with a network error, so it can never reach a real host and the
 * worker sees exactly what an unreachable host looks like. (Without this catch-all, msw's
 * `onUnhandledFrame: "error"` would fail it the same way, only without the record.)
 */
let networkInstalled = false;

export function useMockNetwork(): void {
  // Once per test file; files of the shared vitest project share this module, hence the reset below.
  if (networkInstalled) return;
  networkInstalled = true;
  beforeAll(() => {
    network.enable();
    network.use(
      ...PROVIDER_HANDLERS,
      http.all("*", ({ request }) => {
        outbound.push(`${request.method} ${request.url}`);
        return HttpResponse.error();
      }),
    );
  });
  afterAll(() => {
    network.disable();
    networkInstalled = false;
  });
}

async function ok(
  tenant: TestTenant,
  method: string,
  path: string,
  body: unknown,
  headers?: Record<string, string>,
) {
  const response = await send(method, path, {
    body: JSON.stringify(body),
    bearer: tenant.adminKey,
    ...(headers ? { headers } : {}),
  });
  if (response.status >= 300)
    throw new Error(`target setup ${method} ${path} failed: ${response.status} ${response.text}`);
  return JSON.parse(response.text) as Record<string, unknown>;
}

const stripeTestSecret = () => `sk_test_${randomBase62(32)}`;

async function credentialTarget(budget: TenantBudget, versions: number): Promise<Target> {
  const tenant = await budget.take(versions);
  const target: Target = {
    kind: versions === 1 ? "credential" : "credential-3-versions",
    tenant,
    rowId: null,
    wizardId: null,
    version: 1,
    revision: 1,
    plaintext: new Map(),
    display: new Map(),
  };
  const first = { secret_key: stripeTestSecret() };
  const created = await ok(tenant, "POST", "/api/v1/credentials", {
    service: "stripe",
    environment: "development",
    security_level: "basic",
    name: "property target",
    fields: first,
  });
  target.rowId = created.id as string;
  target.plaintext.set(1, first);
  target.display.set(1, created.fields as Record<string, string>);
  for (let version = 2; version <= versions; version++) {
    const fields = { secret_key: stripeTestSecret(), publishable_key: `pk_test_${randomBase62(30)}` };
    const updated = await ok(
      tenant,
      "PATCH",
      `/api/v1/credentials/${target.rowId}`,
      { fields },
      {
        "if-match": etag(target),
      },
    );
    target.version = updated.version as number;
    target.revision += 1;
    target.plaintext.set(target.version, fields);
    target.display.set(target.version, updated.fields as Record<string, string>);
  }
  return target;
}

const WIZARD_SETUP_COST: Record<string, number> = {
  "wizard-started": 1,
  "wizard-at-security": 2,
  "wizard-at-keys": 3,
  "wizard-at-monitoring": 8,
};

async function wizardTarget(budget: TenantBudget, kind: TargetKind): Promise<Target> {
  const tenant = await budget.take((WIZARD_SETUP_COST[kind] ?? 0) + 1);
  const wizard = (path: string, method: string, body: unknown) =>
    ok(tenant, method, `/api/v1/wizard${path}`, body);
  const id = (await wizard("", "POST", {})).id as string;
  if (kind !== "wizard-started") {
    await wizard(`/${id}/steps/services`, "PUT", { service_ids: WIZARD_SERVICES });
  }
  if (kind === "wizard-at-keys" || kind === "wizard-at-monitoring") {
    await wizard(`/${id}/steps/security`, "PUT", WIZARD_SECURITY);
  }
  if (kind === "wizard-at-monitoring") {
    await wizard(`/${id}/keys/stripe`, "POST", { fields: { secret_key: stripeTestSecret() } });
    await wizard(`/${id}/keys/openai`, "POST", { fields: { api_key: openaiKey() } });
    await wizard(`/${id}/steps/keys`, "PUT", {});
    await wizard(`/${id}/tests`, "POST", {});
    await wizard(`/${id}/steps/testing`, "PUT", {});
  }
  // The Durable Object read the properties compare is exactly what GET /api/v1/wizard/{id} shows.
  const viaHttp = await send("GET", `/api/v1/wizard/${id}`, { bearer: tenant.adminKey });
  const snapshot = JSON.parse(await wizardSnapshot(tenant.id, id)) as { storage: { state: unknown } };
  expect(JSON.parse(viaHttp.text)).toEqual(snapshot.storage.state);
  const expectedStep: Record<string, string> = {
    "wizard-started": "services",
    "wizard-at-security": "security",
    "wizard-at-keys": "keys",
    "wizard-at-monitoring": "monitoring",
  };
  expect(JSON.parse(viaHttp.text).current_step).toBe(expectedStep[kind]);
  return {
    kind,
    tenant,
    rowId: null,
    wizardId: id,
    version: 0,
    revision: 0,
    plaintext: new Map(),
    display: new Map(),
  };
}

/**
 * A text body's `$ref:<name>` placeholders replaced by the target's ids, so generated bodies can name the
 * target tenant's own channels, rule or SendGrid credential (ids are random, the generators are not).
 */
export function bindRefs(body: Body, target: Target | null): Body {
  const refs = target?.refs;
  if (!refs || typeof body !== "string") return body;
  return body.replace(/\$ref:([a-z_]+)/g, (placeholder, name: string) => refs[name] ?? placeholder);
}

const hex = (length: number) =>
  Array.from(crypto.getRandomValues(new Uint8Array(length / 2)), (b) => b.toString(16).padStart(2, "0")).join(
    "",
  );

/** The channels of a "monitoring-channels" target, one of each kind; the ref name is the kind. */
const storedChannels = () => ({
  email: { kind: "email", name: "Stored email", to: "ops@example.com" },
  slack: {
    kind: "slack",
    name: "Stored slack",
    webhook_url: `https://hooks.slack.com/services/T${randomBase62(8)}/B${randomBase62(8)}/${randomBase62(24)}`,
  },
  webhook: { kind: "webhook", name: "Stored webhook", url: "https://hooks.example.com/keywarden" },
  sms: {
    kind: "sms",
    name: "Stored sms",
    to: "+15550100001",
    from: "+15550100002",
    twilio_account_sid: `AC${hex(32)}`,
    twilio_auth_token: hex(32),
  },
});

function monitoringTarget(
  kind: TargetKind,
  tenant: TestTenant,
  rowId: string | null,
  refs: Record<string, string>,
  views: Record<string, Record<string, unknown>>,
): Target {
  return {
    kind,
    tenant,
    rowId,
    wizardId: null,
    version: 0,
    revision: 0,
    plaintext: new Map(),
    display: new Map(),
    refs,
    views,
  };
}

/**
 * A SendGrid credential and one stored channel of each kind. The credential is the target row, so every
 * request also proves it left the credential alone.
 */
async function channelsTarget(budget: TenantBudget): Promise<Target> {
  const tenant = await budget.take(5);
  const credential = await ok(tenant, "POST", "/api/v1/credentials", {
    service: "sendgrid",
    environment: "development",
    security_level: "basic",
    name: "alert mail",
    fields: { api_key: `SG.${randomBase62(22)}.${randomBase62(43)}` },
  });
  const refs: Record<string, string> = { sendgrid: credential.id as string };
  const views: Record<string, Record<string, unknown>> = {};
  for (const [name, channel] of Object.entries(storedChannels())) {
    const created = await ok(tenant, "POST", "/api/v1/monitoring/channels", channel);
    const view = created.channel as Record<string, unknown>;
    refs[name] = view.id as string;
    views[name] = view;
  }
  return monitoringTarget("monitoring-channels", tenant, refs.sendgrid as string, refs, views);
}

/** Two channels and a stored usage rule sending to the first. */
async function rulesTarget(budget: TenantBudget): Promise<Target> {
  const tenant = await budget.take(3);
  const { email, slack } = storedChannels();
  const a = (await ok(tenant, "POST", "/api/v1/monitoring/channels", email)).channel as { id: string };
  const b = (await ok(tenant, "POST", "/api/v1/monitoring/channels", slack)).channel as { id: string };
  const rule = await ok(tenant, "POST", "/api/v1/monitoring/rules", {
    kind: "usage_threshold",
    name: "Stored rule",
    service_id: "stripe",
    settings: { threshold: 1_000 },
    channel_ids: [a.id],
  });
  const refs = { channel_a: a.id, channel_b: b.id, rule: rule.id as string };
  return monitoringTarget("monitoring-rules", tenant, null, refs, { rule });
}

/** What a "security-policy" target's tenant starts with. */
export const STORED_POLICY = {
  security_level: "basic",
  environment: "development",
  rotation_policy: "90_days",
};

/**
 * A tenant of its own with a stored policy. Always a new tenant: a policy that requires 2FA leaves its
 * tenant's un-enrolled admin key unable to write another (403), so such a success consumes the tenant.
 */
async function policyTarget(budget: TenantBudget): Promise<Target> {
  budget.renew();
  const tenant = await budget.take(2);
  const policy = await ok(tenant, "PUT", "/api/v1/security-policy", STORED_POLICY);
  return monitoringTarget("security-policy", tenant, null, {}, { policy });
}

/** A fresh target of the given kind in the budget's current tenant (bumps the budget's generation). */
export async function makeTarget(kind: TargetKind, budget: TenantBudget): Promise<Target> {
  let target: Target;
  if (kind === "key") {
    const fresh = await budget.newKey("property target");
    target = {
      kind,
      tenant: fresh.tenant,
      rowId: fresh.id,
      wizardId: null,
      version: 0,
      revision: 0,
      plaintext: new Map(),
      display: new Map(),
    };
  } else if (kind === "credential") target = await credentialTarget(budget, 1);
  else if (kind === "credential-3-versions") target = await credentialTarget(budget, 3);
  else if (kind === "monitoring-channels") target = await channelsTarget(budget);
  else if (kind === "monitoring-rules") target = await rulesTarget(budget);
  else if (kind === "security-policy") target = await policyTarget(budget);
  else target = await wizardTarget(budget, kind);
  budget.generation += 1;
  return target;
}
