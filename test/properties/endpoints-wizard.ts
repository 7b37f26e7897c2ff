/**
 * threat model case 16 for the wizard's step endpoints: the endpoint table entries the shared driver
 * (request-bodies-shared.ts) runs. Nothing reaches D1 before the commit, so every 2xx here must
 * leave every D1 row count and fingerprint alone, except the DEK encryption counter when a secret
 * was sealed; the wizard's Durable Object must hold exactly what the request implies.
 */
import { expect } from "vitest";
import { CHANNEL_SLOTS, channelSlot, serviceSlot, serviceSlots } from "../../src/wizard/slots";
import type { WizardState } from "../../src/wizard/wizard-state";
import { channelTestValidArb, monitoringValidArb, VAULT_FIELDS } from "./body-arbitraries";
import { expectNoSecretEcho } from "./endpoints-vault";
import type { Effect, Endpoint, RunContext } from "./request-bodies-shared";
import { WIZARD_SERVICES } from "./targets";
import { NO_CHANGE, recordOutcome } from "./worker-support";

interface Snapshot {
  state: WizardState;
  /** The sealed blobs by slot (src/wizard/slots.ts: "service/stripe/secret_key", "channel/Ops/webhook_url"). */
  sealed: Record<string, string>;
  alarm: number | null;
}

/** The Durable Object snapshot taken by the driver (worker-support.ts wizardSnapshot). */
export function parseSnapshot(text: string | null): Snapshot {
  if (text === null) throw new Error("no wizard snapshot");
  const parsed = JSON.parse(text) as { storage: Record<string, unknown>; alarm: number | null };
  const sealed: Record<string, string> = {};
  for (const [key, value] of Object.entries(parsed.storage)) {
    if (key.startsWith("sealed:")) sealed[key.slice("sealed:".length)] = value as string;
  }
  return { state: parsed.storage.state as WizardState, sealed, alarm: parsed.alarm };
}

/** The state without the activity timestamps every successful mutation moves. */
export function withoutTimestamps(state: WizardState): Omit<WizardState, "updated_at" | "expires_at"> {
  const { updated_at: _u, expires_at: _e, ...rest } = state;
  return rest;
}

/** D1 is untouched: a wizard writes nothing before its commit (sealing only bumps the DEK counter). */
function expectNoD1Write(effect: Effect, sealed: boolean, change: Record<string, number>): void {
  expect(change).toEqual(NO_CHANGE);
  expect(effect.after.apiKeysFingerprint).toBe(effect.before.apiKeysFingerprint);
  expect(effect.after.credentialsFingerprint).toBe(effect.before.credentialsFingerprint);
  expect(effect.after.monitoringFingerprint).toBe(effect.before.monitoringFingerprint);
  if (sealed) expect(effect.after.dataKeysFingerprint).not.toBe(effect.before.dataKeysFingerprint);
  else expect(effect.after.dataKeysFingerprint).toBe(effect.before.dataKeysFingerprint);
}

function sealedExcept(sealed: Record<string, string>, prefix: string): Record<string, string> {
  return Object.fromEntries(Object.entries(sealed).filter(([slot]) => !slot.startsWith(prefix)));
}

function slotNames(sealed: Record<string, string>, prefix: string): string[] {
  return Object.keys(sealed)
    .filter((slot) => slot.startsWith(prefix))
    .sort();
}

const wizardPath = (ctx: { wizardId: string | null } | null, suffix: string) =>
  `/api/v1/wizard/${ctx?.wizardId}${suffix}`;

interface ChannelRequest {
  kind: "email" | "slack" | "webhook" | "sms";
  name: string;
  to?: string;
  webhook_url?: string;
  url?: string;
  twilio_auth_token?: string;
}

/** The sealed slot each channel kind's secret setting lives in. */
const SECRET_SLOT: Record<ChannelRequest["kind"], string | null> = {
  email: null,
  slack: "webhook_url",
  webhook: "signing_secret",
  sms: "twilio_auth_token",
};

/** Secret channel settings never come back in plaintext (webhook signing secrets are shown once, by design). */
function expectChannelSecretsMasked(text: string, channels: ChannelRequest[]): void {
  for (const channel of channels) {
    for (const value of [channel.webhook_url, channel.twilio_auth_token]) {
      if (value !== undefined)
        expect(text.includes(value), `a ${channel.kind} secret was echoed`).toBe(false);
    }
  }
}

/** Where a network channel's test message is sent. */
function deliveryHost(channel: ChannelRequest): string {
  if (channel.kind === "slack") return "hooks.slack.com";
  if (channel.kind === "sms") return "api.twilio.com";
  return new URL(channel.url as string).hostname;
}

function statesEqual(ctx: RunContext, body: unknown, effect: Effect): Snapshot {
  const after = parseSnapshot(effect.wizardAfter);
  // What the route answers is exactly what the wizard now holds (and what a reload shows).
  expect(body).toEqual(after.state);
  expect(after.state.id).toBe(ctx.target?.wizardId);
  expect(effect.outbound, "a wizard step called out").toEqual([]);
  return after;
}

export const WIZARD_ENDPOINTS: Endpoint[] = [
  {
    label: "PUT /api/v1/wizard/{id}/steps/services",
    method: "PUT",
    fields: VAULT_FIELDS.wizardServices,
    required: ["service_ids"],
    allowed: [200, 400, 413, 415, 422],
    auth: "key",
    target: "wizard-started",
    path: (target) => wizardPath(target, "/steps/services"),
    onSuccess: (status, body, change, ctx, effect) => {
      expect(status).toBe(200);
      const after = statesEqual(ctx, body, effect);
      const before = parseSnapshot(effect.wizardBefore);
      const request = ctx.request as { service_ids: string[] };
      expect(after.state.steps.services).toEqual({ service_ids: [...new Set(request.service_ids)] });
      expect(after.state.steps.security).toEqual(before.state.steps.security);
      expect(after.sealed).toEqual(before.sealed);
      expectNoD1Write(effect, false, change);
      return false;
    },
  },
  {
    label: "PUT /api/v1/wizard/{id}/steps/security",
    method: "PUT",
    fields: VAULT_FIELDS.wizardSecurity,
    required: ["security_level", "environment", "rotation_policy"],
    allowed: [200, 400, 413, 415, 422],
    auth: "key",
    target: "wizard-at-security",
    path: (target) => wizardPath(target, "/steps/security"),
    onSuccess: (status, body, change, ctx, effect) => {
      expect(status).toBe(200);
      const after = statesEqual(ctx, body, effect);
      const before = parseSnapshot(effect.wizardBefore);
      const request = ctx.request as Record<string, unknown>;
      // The schema's defaults filled in, nothing else added or dropped.
      expect(after.state.steps.security).toEqual({
        ip_allowlist: [],
        country_allowlist: [],
        require_2fa: false,
        compliance: [],
        ...request,
      });
      if (request.security_level === "enterprise") {
        expect(request.require_2fa).toBe(true);
        expect((request.ip_allowlist as string[]).length).toBeGreaterThan(0);
      }
      if (request.rotation_policy === "custom") expect(request.custom_rotation_days).toBeDefined();
      expect(after.state.steps.services).toEqual(before.state.steps.services);
      expect(after.sealed).toEqual(before.sealed);
      expectNoD1Write(effect, false, change);
      return false;
    },
  },
  {
    label: "POST /api/v1/wizard/{id}/keys/{service_id}",
    method: "POST",
    fields: VAULT_FIELDS.wizardServiceKeys,
    required: ["fields"],
    allowed: [200, 400, 413, 415, 422],
    auth: "key",
    target: "wizard-at-keys",
    // Both selected services, and ids outside the catalogue (422 before anything is read or sealed).
    variants: ["stripe", "stripe", "openai", "nope", "Stripe", "stripe%00", "'; DROP TABLE credentials; --"],
    path: (target, variant) => wizardPath(target, `/keys/${encodeURIComponent(variant ?? "stripe")}`),
    onSuccess: (status, body, change, ctx, effect) => {
      expect(status).toBe(200);
      const service = ctx.variant as string;
      expect(WIZARD_SERVICES).toContain(service);
      const response = body as { state: unknown; validation: { ok: boolean } };
      const after = statesEqual(ctx, response.state, effect);
      const before = parseSnapshot(effect.wizardBefore);
      const request = ctx.request as { fields: Record<string, string> };
      expect(response.validation.ok).toBe(true);
      // Exactly the submitted values are sealed for this service; nothing else in the wizard moved.
      const prefix = serviceSlots(service);
      expect(slotNames(after.sealed, prefix)).toEqual(
        Object.keys(request.fields)
          .map((field) => serviceSlot(service, field))
          .sort(),
      );
      expect(sealedExcept(after.sealed, prefix)).toEqual(sealedExcept(before.sealed, prefix));
      const entry = after.state.steps.keys.services[service];
      expect(entry?.complete).toBe(true);
      expect(Object.keys(entry?.fields ?? {})).toEqual(expect.arrayContaining(Object.keys(request.fields)));
      expect(after.state.steps.testing).toBeNull();
      expectNoD1Write(effect, true, change);
      expectNoSecretEcho(effect.text, request.fields);
      expectNoSecretEcho(JSON.stringify(after.state), request.fields);
      return false;
    },
  },
  {
    label: "PUT /api/v1/wizard/{id}/steps/monitoring",
    method: "PUT",
    fields: VAULT_FIELDS.wizardMonitoring,
    required: [],
    valid: monitoringValidArb(WIZARD_SERVICES),
    allowed: [200, 400, 413, 415, 422],
    auth: "key",
    target: "wizard-at-monitoring",
    path: (target) => wizardPath(target, "/steps/monitoring"),
    onSuccess: (status, body, change, ctx, effect) => {
      expect(status).toBe(200);
      const response = body as { state: unknown; signing_secrets: Record<string, string> };
      const after = statesEqual(ctx, response.state, effect);
      const before = parseSnapshot(effect.wizardBefore);
      const request = ctx.request as { channels?: ChannelRequest[]; rules?: Record<string, unknown>[] };
      const channels = request.channels ?? [];
      const names = channels.map((c) => c.name.trim());
      const monitoring = after.state.steps.monitoring;
      expect(monitoring?.channels.map((c) => c.name)).toEqual(names);
      expect(monitoring?.rules).toEqual(
        (request.rules ?? []).map((rule) => ({
          ...(rule.kind === "usage_threshold" ? { window: "day" } : {}),
          ...rule,
          channel_names: (rule.channel_names as string[]).map((n) => n.trim()),
        })),
      );
      // Each channel's secret setting sealed under its name; the services' values untouched.
      const expectedSlots = channels.flatMap((c, i) => {
        const field = SECRET_SLOT[c.kind];
        return field ? [channelSlot(names[i] as string, field)] : [];
      });
      expect(slotNames(after.sealed, CHANNEL_SLOTS)).toEqual(expectedSlots.sort());
      expect(sealedExcept(after.sealed, CHANNEL_SLOTS)).toEqual(sealedExcept(before.sealed, CHANNEL_SLOTS));
      // A webhook's signing secret is generated once and shown once; a known one is kept.
      const fresh = channels
        .filter(
          (c, i) => c.kind === "webhook" && !before.sealed[channelSlot(names[i] as string, "signing_secret")],
        )
        .map((c) => c.name.trim());
      expect(Object.keys(response.signing_secrets).sort()).toEqual(fresh.sort());
      for (const [name, secret] of Object.entries(response.signing_secrets)) {
        expect(secret).toMatch(/^whsec_/);
        expect(JSON.stringify(after.state).includes(secret), `signing secret of ${name} in the state`).toBe(
          false,
        );
      }
      expect(after.state.furthest_step).toBe("review");
      expectNoD1Write(effect, expectedSlots.length > 0, change);
      expectChannelSecretsMasked(effect.text, channels);
      expectChannelSecretsMasked(JSON.stringify(after.state), channels);
      return false;
    },
  },
  {
    label: "POST /api/v1/wizard/{id}/monitoring/test",
    method: "POST",
    fields: VAULT_FIELDS.wizardChannelTest,
    required: ["channel"],
    valid: channelTestValidArb,
    allowed: [200, 400, 413, 415, 422],
    auth: "key",
    target: "wizard-at-monitoring",
    network: true,
    path: (target) => wizardPath(target, "/monitoring/test"),
    onSuccess: (status, body, change, ctx, effect) => {
      expect(status).toBe(200);
      const channel = (ctx.request as { channel: ChannelRequest }).channel;
      const { signing_secret: signingSecret, ...result } = body as Record<string, unknown>;
      const before = parseSnapshot(effect.wizardBefore);
      const after = parseSnapshot(effect.wizardAfter);
      if (channel.kind === "email") {
        // E-mail goes through the send_email binding, never through fetch.
        expect([{ delivered: true }, { delivered: false, reason: "email_rejected" }]).toContainEqual(result);
        expect(effect.outbound).toEqual([]);
      } else {
        // Every other channel went to the network mock, which answers with a network error: the only
        // legal 200 is "unreachable", after exactly one request to the channel's own host. A real
        // delivery, a status from some host, or a second request would all fail here.
        expect(result).toEqual({ delivered: false, reason: "unreachable" });
        expect(effect.outbound).toHaveLength(1);
        const [method, url] = (effect.outbound[0] as string).split(" ");
        expect(method).toBe("POST");
        expect(new URL(url as string).protocol).toBe("https:");
        expect(new URL(url as string).hostname).toBe(deliveryHost(channel));
      }
      const slot = channelSlot(channel.name.trim(), "signing_secret");
      if (signingSecret !== undefined) {
        // A webhook's first test generates its signing secret: sealed into the wizard, shown once.
        expect(channel.kind).toBe("webhook");
        expect(before.sealed[slot]).toBeUndefined();
        expect(signingSecret).toMatch(/^whsec_/);
        expect(Object.keys(after.sealed).sort()).toEqual([...Object.keys(before.sealed), slot].sort());
        expect(sealedExcept(after.sealed, slot)).toEqual(before.sealed);
        expect(withoutTimestamps(after.state)).toEqual(withoutTimestamps(before.state));
        expectNoD1Write(effect, true, change);
      } else {
        if (channel.kind === "webhook") expect(before.sealed[slot]).toBeDefined();
        expect(effect.wizardAfter, "a channel test changed the wizard").toBe(effect.wizardBefore);
        expectNoD1Write(effect, false, change);
      }
      expectChannelSecretsMasked(effect.text, [channel]);
      recordOutcome(`monitoring/test ${channel.kind} ${result.reason ?? "delivered"}`);
      if (signingSecret !== undefined) recordOutcome("monitoring/test signing secret created");
      return false;
    },
  },
];
