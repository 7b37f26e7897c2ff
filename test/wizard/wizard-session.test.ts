import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { channelSlot } from "../../src/wizard/slots";
import type { SecurityStep } from "../../src/wizard/steps";
import { WIZARD_IDLE_MS, type WizardSession } from "../../src/wizard/wizard-session";

const newStub = () => env.WIZARD_SESSION.get(env.WIZARD_SESSION.newUniqueId());

/** A new session of tenant ten_a moved straight to the review step in its storage, holding `sealed` by slot. */
async function sessionAtReview(sealed: Record<string, string> = {}) {
  const stub = newStub();
  await stub.create("ten_a", "key_a");
  await runInDurableObject(stub, (_instance: WizardSession, state) => {
    const current = state.storage.kv.get<Record<string, unknown>>("state") as Record<string, unknown>;
    state.storage.kv.put("state", { ...current, furthest_step: "review", current_step: "review" });
    for (const [slot, value] of Object.entries(sealed)) state.storage.kv.put(`sealed:${slot}`, value);
  });
  return stub;
}

describe("WizardSession Durable Object", () => {
  it("schedules an expiry alarm 24 h after the last activity", async () => {
    const stub = newStub();
    const now = Date.now();
    await stub.create("ten_a", "key_a", now);
    const alarm = await runInDurableObject(stub, (_instance: WizardSession, state) =>
      state.storage.getAlarm(),
    );
    expect(alarm).toBe(now + WIZARD_IDLE_MS);
  });

  it("wipes an abandoned wizard's storage, secrets included, when the alarm fires after the idle period", async () => {
    const stub = newStub();
    const past = Date.now() - WIZARD_IDLE_MS - 1000;
    await stub.create("ten_a", "key_a", past);
    await stub.apply("ten_a", { type: "services", data: { service_ids: ["stripe"] } }, past);
    await runInDurableObject(stub, (_instance: WizardSession, state) => {
      state.storage.kv.put("sealed:stripe.secret_key", "AQAAAAE...");
    });
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const keys = await runInDurableObject(
      stub,
      (_instance: WizardSession, state) => [...state.storage.kv.list()].length,
    );
    expect(keys).toBe(0);
    expect(await stub.read("ten_a")).toMatchObject({ ok: false, code: "NOT_FOUND" });
  });

  it("keeps an active wizard when an early alarm fires, and re-arms it", async () => {
    const stub = newStub();
    await stub.create("ten_a", "key_a");
    await runInDurableObject(stub, (_instance: WizardSession, state) => state.storage.setAlarm(Date.now()));
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await stub.read("ten_a")).toMatchObject({ ok: true });
    const alarm = await runInDurableObject(stub, (_instance: WizardSession, state) =>
      state.storage.getAlarm(),
    );
    expect(alarm).toBeGreaterThan(Date.now());
  });

  it("answers another tenant exactly as if the wizard did not exist", async () => {
    const stub = newStub();
    await stub.create("ten_a", "key_a");
    expect(await stub.read("ten_b")).toEqual({ ok: false, code: "NOT_FOUND", detail: "No such wizard." });
    expect(await stub.sealed("ten_b")).toEqual({ ok: false, code: "NOT_FOUND", detail: "No such wizard." });
    expect(await stub.snapshot("ten_b")).toEqual({ ok: false, code: "NOT_FOUND", detail: "No such wizard." });
    expect(await stub.beginCommit("ten_b")).toEqual({
      ok: false,
      code: "NOT_FOUND",
      detail: "No such wizard.",
    });
    expect(await stub.apply("ten_b", { type: "navigate", step: "services" })).toMatchObject({
      ok: false,
      code: "NOT_FOUND",
    });
  });

  it("refuses to be created twice", async () => {
    const stub = newStub();
    await stub.create("ten_a", "key_a");
    expect(await stub.create("ten_a", "key_a")).toMatchObject({ ok: false, code: "CONFLICT" });
  });

  it("holds a commit lease so a second commit is refused until the first finishes or its lease lapses", async () => {
    const stub = await sessionAtReview();
    const now = Date.now();
    expect(await stub.beginCommit("ten_a", now)).toMatchObject({ ok: true, value: { kind: "proceed" } });
    expect(await stub.beginCommit("ten_a", now + 1000)).toMatchObject({ ok: false, code: "CONFLICT" });
    expect(await stub.beginCommit("ten_a", now + 31_000)).toMatchObject({
      ok: true,
      value: { kind: "proceed" },
    });
  });

  it("hands a started commit the state, sealed values and staged rows of the moment it took the lease, in one call", async () => {
    const stub = await sessionAtReview({ [channelSlot("Ops", "api_key")]: "AQAAAAE..." });
    const snapshot = await stub.snapshot("ten_a");
    expect(snapshot).toMatchObject({
      ok: true,
      value: {
        state: { furthest_step: "review" },
        sealed: { [channelSlot("Ops", "api_key")]: "AQAAAAE..." },
      },
    });
    const begun = await stub.beginCommit("ten_a");
    expect(begun).toEqual({
      ok: true,
      value: {
        kind: "proceed",
        state: snapshot.ok ? snapshot.value.state : null,
        sealed: { [channelSlot("Ops", "api_key")]: "AQAAAAE..." },
        issuedRows: {},
      },
    });
  });
});

describe("WizardSession staged keys", () => {
  const basic: SecurityStep = {
    security_level: "basic",
    environment: "production",
    rotation_policy: "none",
    ip_allowlist: [],
    country_allowlist: [],
    require_2fa: false,
    compliance: [],
  };
  const enterprise: SecurityStep = {
    ...basic,
    security_level: "enterprise",
    rotation_policy: "90_days",
    ip_allowlist: ["203.0.113.0/24"],
    require_2fa: true,
  };
  const issued = (security: SecurityStep, serviceIds: string[]) => ({
    type: "issuedKeys" as const,
    security,
    issued: Object.fromEntries(serviceIds.map((id) => [id, { key_id: `key_${id}`, start: "kw_live_" }])),
    rows: Object.fromEntries(serviceIds.map((id) => [id, [{ id: `key_${id}`, serviceId: id }]])),
  });

  async function atKeys(security: SecurityStep) {
    const stub = newStub();
    await stub.create("ten_a", "key_a");
    await stub.apply("ten_a", { type: "services", data: { service_ids: ["stripe", "openai"] } });
    await stub.apply("ten_a", { type: "security", data: security });
    return stub;
  }

  it("refuses keys minted under security settings the wizard no longer has (a change raced the minting)", async () => {
    const stub = await atKeys(enterprise);
    expect(await stub.apply("ten_a", issued(basic, ["stripe", "openai"]))).toMatchObject({
      ok: false,
      code: "CONFLICT",
    });
    expect(await stub.issuedRows("ten_a")).toEqual({ ok: true, value: {} });
  });

  it("refuses keys for a service that is no longer selected", async () => {
    const stub = await atKeys(basic);
    await stub.apply("ten_a", { type: "services", data: { service_ids: ["stripe"] } });
    expect(await stub.apply("ten_a", issued(basic, ["stripe", "openai"]))).toMatchObject({
      ok: false,
      code: "CONFLICT",
    });
  });

  it("drops every staged key when the security settings change, and a deselected service's when services change", async () => {
    const stub = await atKeys(basic);
    await stub.apply("ten_a", issued(basic, ["stripe", "openai"]));
    const row = (serviceId: string) => [{ id: `key_${serviceId}`, serviceId }];
    expect(await stub.issuedRows("ten_a")).toEqual({
      ok: true,
      value: { stripe: row("stripe"), openai: row("openai") },
    });
    await stub.apply("ten_a", { type: "services", data: { service_ids: ["stripe"] } });
    expect(await stub.issuedRows("ten_a")).toEqual({ ok: true, value: { stripe: row("stripe") } });
    const changed = await stub.apply("ten_a", { type: "security", data: enterprise });
    expect(changed).toMatchObject({ ok: true, value: { steps: { keys: { issued_keys: {} } } } });
    expect(await stub.issuedRows("ten_a")).toEqual({ ok: true, value: {} });
  });
});
