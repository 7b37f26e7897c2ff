import { DurableObject } from "cloudflare:workers";
import { ApiError, type ErrorCode } from "../errors";
import { complianceChecklist } from "./compliance";
import { CHANNEL_SLOTS, serviceSlot, serviceSlots } from "./slots";
import { type SecurityStep, STEPS, type Step } from "./steps";
import type { CommitSummary, WizardMutation, WizardState } from "./wizard-state";

/** An abandoned wizard is wiped after this much inactivity. */
export const WIZARD_IDLE_MS = 24 * 60 * 60 * 1000;
/**
 * However active, a wizard is wiped this long after it was created. The values it holds are sealed under the
 * tenant DEK of that moment, and a retiring DEK is deleted only once no wizard can hold a blob sealed under
 * it (src/vault/dek-rotation.ts): this bound is what makes that moment known.
 */
export const WIZARD_MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;
/** How soon a failed expiry wipe tries again. */
const ALARM_RETRY_MS = 60_000;
/** How long one commit attempt holds the wizard before another may try (a crashed attempt's lease). */
const COMMIT_LEASE_MS = 30_000;

const STATE = "state";
const SEALED_PREFIX = "sealed:";
/** Staged key rows by service, with the security settings they were minted under. */
const ISSUED_ROWS = "issued-key-rows";
const COMMIT_LEASE = "commit-lease";

interface StagedKeys {
  security: SecurityStep;
  rows: Record<string, unknown[]>;
}

const sameSettings = (a: SecurityStep | null, b: SecurityStep | null) =>
  JSON.stringify(a) === JSON.stringify(b);

/** Errors do not keep their class across RPC, so refusals travel as values and become ApiErrors again in the Worker. */
export type WizardResult<T> = { ok: true; value: T } | { ok: false; code: ErrorCode; detail: string };

function guard<T>(run: () => T): WizardResult<Awaited<T>> | Promise<WizardResult<Awaited<T>>> {
  const refuse = (error: unknown): WizardResult<Awaited<T>> => {
    if (error instanceof ApiError) return { ok: false, code: error.code, detail: error.detail };
    throw error;
  };
  try {
    const value = run();
    if (value instanceof Promise) return value.then((v) => ({ ok: true as const, value: v }), refuse);
    return { ok: true, value: value as Awaited<T> };
  } catch (error) {
    return refuse(error);
  }
}

/** A wizard's state and its sealed values (slot -> blob), read in one call. */
export interface WizardSnapshot {
  state: WizardState;
  sealed: Record<string, string>;
}

/** What `beginCommit` answers: a finished commit's state, or the lease taken with what the commit writes from. */
export type CommitStart =
  | { kind: "done"; state: WizardState }
  | {
      kind: "proceed";
      state: WizardState;
      sealed: Record<string, string>;
      /** Staged key rows by service (`issuedRows`). */
      issuedRows: Record<string, unknown[]>;
    };

const indexOf = (step: Step) => STEPS.indexOf(step);
const next = (step: Step): Step => STEPS[Math.min(indexOf(step) + 1, STEPS.length - 1)] as Step;

/**
 * One wizard: a state machine over the six steps, with an alarm that wipes it when abandoned. It only
 * ever holds ciphertext (sealed by the Worker with the tenant DEK, AAD-bound to this wizard) and masked
 * values. Every method takes the caller's tenant and answers as if the wizard did not exist for any other.
 */
export class WizardSession extends DurableObject<Env> {
  private get kv() {
    return this.ctx.storage.kv;
  }

  private stateFor(tenantId: string): WizardState {
    const state = this.kv.get<WizardState>(STATE);
    if (!state || state.tenant_id !== tenantId) throw new ApiError("NOT_FOUND", "No such wizard.");
    return state;
  }

  private async save(state: WizardState, now: number): Promise<WizardState> {
    state.updated_at = new Date(now).toISOString();
    const wipeAt = Math.min(now + WIZARD_IDLE_MS, Date.parse(state.created_at) + WIZARD_MAX_AGE_MS);
    state.expires_at = new Date(wipeAt).toISOString();
    state.compliance_checklist = state.steps.security
      ? complianceChecklist(
          state.steps.security,
          state.steps.monitoring?.channels.length ?? 0,
          state.steps.services?.service_ids.length ?? 0,
        )
      : [];
    this.kv.put(STATE, state);
    await this.ctx.storage.setAlarm(wipeAt);
    return state;
  }

  private async createState(tenantId: string, createdBy: string, now: number): Promise<WizardState> {
    if (this.kv.get(STATE)) throw new ApiError("CONFLICT", "This wizard already exists.");
    const at = new Date(now).toISOString();
    return this.save(
      {
        id: this.ctx.id.toString(),
        tenant_id: tenantId,
        created_by: createdBy,
        status: "open",
        current_step: "services",
        furthest_step: "services",
        steps: {
          services: null,
          security: null,
          keys: { services: {}, issued_keys: {} },
          testing: null,
          monitoring: null,
        },
        compliance_checklist: [],
        commit: null,
        created_at: at,
        updated_at: at,
        expires_at: at,
      },
      now,
    );
  }

  /** The sealed blobs, for the Worker to decrypt at test and commit time. */
  private sealedBlobs(tenantId: string): Record<string, string> {
    this.stateFor(tenantId);
    const out: Record<string, string> = {};
    for (const [key, value] of this.kv.list<string>({ prefix: SEALED_PREFIX }))
      out[key.slice(SEALED_PREFIX.length)] = value;
    return out;
  }

  /**
   * The staged key rows of the services still selected, and only while the security settings they were
   * minted under still apply: a key is never committed with a level or allowlist the admin has since changed.
   */
  private storedIssuedRows(tenantId: string): Record<string, unknown[]> {
    const state = this.stateFor(tenantId);
    const staged = this.kv.get<StagedKeys>(ISSUED_ROWS);
    if (!staged || !sameSettings(staged.security, state.steps.security)) return {};
    const selected = state.steps.services?.service_ids ?? [];
    return Object.fromEntries(
      Object.entries(staged.rows).filter(
        ([serviceId]) => selected.includes(serviceId) && state.steps.keys.issued_keys[serviceId],
      ),
    );
  }

  private async applyMutation(tenantId: string, mutation: WizardMutation, now: number): Promise<WizardState> {
    const state = this.stateFor(tenantId);
    if (state.status !== "open") throw new ApiError("CONFLICT", "This wizard has been committed.");
    const step: Step =
      mutation.type === "navigate" || mutation.type === "confirm"
        ? mutation.step
        : mutation.type === "services" || mutation.type === "security" || mutation.type === "monitoring"
          ? mutation.type
          : mutation.type === "testResults"
            ? "testing"
            : mutation.type === "channelSecret"
              ? "monitoring"
              : "keys";
    // Going back is always allowed; skipping ahead of the furthest step reached is not.
    if (indexOf(step) > indexOf(state.furthest_step)) {
      throw new ApiError("CONFLICT", `Finish the "${state.furthest_step}" step first.`);
    }
    const advance = (from: Step, resetLater = false) => {
      state.current_step = next(from);
      state.furthest_step =
        resetLater || indexOf(next(from)) > indexOf(state.furthest_step) ? next(from) : state.furthest_step;
    };

    switch (mutation.type) {
      case "navigate":
        state.current_step = mutation.step;
        break;
      case "services": {
        const changed = JSON.stringify(state.steps.services) !== JSON.stringify(mutation.data);
        const before = state.steps.services?.service_ids ?? [];
        const added = mutation.data.service_ids.some((serviceId) => !before.includes(serviceId));
        state.steps.services = mutation.data;
        // Work for services no longer selected is dropped: entered values, generated secrets, issued keys.
        const known = new Set([...before, ...Object.keys(state.steps.keys.services)]);
        for (const serviceId of known) {
          if (!mutation.data.service_ids.includes(serviceId)) this.dropService(state, serviceId);
        }
        // A newly added service has no credentials yet: the admin walks the later steps again.
        advance("services", changed && (state.steps.security === null || added));
        break;
      }
      case "security": {
        const changed = !sameSettings(state.steps.security, mutation.data);
        state.steps.security = mutation.data;
        // A new level or environment changes what keys are acceptable: re-walk from the keys step.
        advance("security", changed);
        if (changed) {
          state.steps.testing = null;
          // Keys issued under the old settings carry the old entropy, backup choice, expiry and
          // allowlists: they are discarded, never committed, and issued again under the new settings.
          // Secrets generated from the catalogue do not depend on these settings and stay.
          state.steps.keys.issued_keys = {};
          this.kv.delete(ISSUED_ROWS);
        }
        break;
      }
      case "serviceFields":
        this.assertSelected(state, mutation.serviceId);
        // Entering a service's values replaces what was entered before; generated values listed in `keep` stay.
        {
          const kept = new Set(mutation.keep.map((field) => serviceSlot(mutation.serviceId, field)));
          for (const [key] of [
            ...this.kv.list({ prefix: `${SEALED_PREFIX}${serviceSlots(mutation.serviceId)}` }),
          ]) {
            if (!kept.has(key.slice(SEALED_PREFIX.length))) this.kv.delete(key);
          }
        }
        for (const [slot, blob] of Object.entries(mutation.sealed))
          this.kv.put(`${SEALED_PREFIX}${slot}`, blob);
        state.steps.keys.services[mutation.serviceId] = mutation.entry;
        state.steps.testing = null;
        state.current_step = "keys";
        break;
      case "issuedKeys": {
        // The Worker minted these from a state it read earlier; if the admin changed the settings or the
        // services since, they are stale and must not be staged.
        if (!sameSettings(state.steps.security, mutation.security)) {
          throw new ApiError(
            "CONFLICT",
            "The security settings changed while the keys were being issued; generate them again.",
          );
        }
        for (const serviceId of Object.keys(mutation.rows)) this.assertSelected(state, serviceId);
        state.steps.keys.issued_keys = mutation.issued;
        this.kv.put(ISSUED_ROWS, { security: mutation.security, rows: mutation.rows } satisfies StagedKeys);
        state.current_step = "keys";
        break;
      }
      case "confirm": {
        const selected = state.steps.services?.service_ids ?? [];
        if (mutation.step === "keys" && !selected.every((id) => state.steps.keys.services[id]?.complete)) {
          throw new ApiError(
            "CONFLICT",
            "Enter or generate the credentials of every selected service first.",
          );
        }
        if (mutation.step === "testing") {
          const results = state.steps.testing?.results ?? {};
          if (!selected.every((id) => results[id]))
            throw new ApiError("CONFLICT", "Test every service first.");
          if (selected.some((id) => results[id]?.status === "invalid")) {
            throw new ApiError(
              "CONFLICT",
              "A provider rejected one of the credentials; fix it before going on.",
            );
          }
        }
        advance(mutation.step);
        break;
      }
      case "testResults": {
        const at = new Date(now).toISOString();
        const results = { ...(state.steps.testing?.results ?? {}) };
        for (const [serviceId, result] of Object.entries(mutation.results))
          results[serviceId] = { ...result, tested_at: at };
        state.steps.testing = { results };
        state.current_step = "testing";
        break;
      }
      case "channelSecret":
        this.kv.put(`${SEALED_PREFIX}${mutation.slot}`, mutation.blob);
        break;
      case "monitoring":
        this.deletePrefix(`${SEALED_PREFIX}${CHANNEL_SLOTS}`);
        for (const [slot, blob] of Object.entries(mutation.sealed))
          this.kv.put(`${SEALED_PREFIX}${slot}`, blob);
        state.steps.monitoring = { channels: mutation.masked, rules: mutation.data.rules };
        advance("monitoring");
        break;
    }
    return this.save(state, now);
  }

  private assertSelected(state: WizardState, serviceId: string) {
    if (!state.steps.services?.service_ids.includes(serviceId)) {
      throw new ApiError("CONFLICT", "That service is not selected in this wizard.");
    }
  }

  private dropService(state: WizardState, serviceId: string) {
    delete state.steps.keys.services[serviceId];
    delete state.steps.keys.issued_keys[serviceId];
    if (state.steps.testing) delete state.steps.testing.results[serviceId];
    this.deletePrefix(`${SEALED_PREFIX}${serviceSlots(serviceId)}`);
    const staged = this.kv.get<StagedKeys>(ISSUED_ROWS);
    if (staged?.rows[serviceId]) {
      delete staged.rows[serviceId];
      this.kv.put(ISSUED_ROWS, staged);
    }
  }

  private deletePrefix(prefix: string) {
    for (const [key] of [...this.kv.list({ prefix })]) this.kv.delete(key);
  }

  /**
   * Starts a commit. A finished commit answers with its state (idempotent); a commit in progress
   * makes a second one fail, so concurrent commits cannot both succeed. A crashed attempt's lease lapses.
   * A started commit gets what it writes from, as of the moment it took the lease, in this one call: the
   * state, the sealed values and the staged key rows.
   */
  private startCommit(tenantId: string, now: number): CommitStart {
    const state = this.stateFor(tenantId);
    if (state.commit) return { kind: "done", state };
    if (state.furthest_step !== "review")
      throw new ApiError("CONFLICT", "Finish every step before committing.");
    const selected = state.steps.services?.service_ids ?? [];
    if (!selected.every((id) => state.steps.keys.services[id]?.complete)) {
      throw new ApiError("CONFLICT", "Enter or generate the credentials of every selected service first.");
    }
    const lease = this.kv.get<number>(COMMIT_LEASE);
    if (lease !== undefined && lease > now)
      throw new ApiError("CONFLICT", "A commit of this wizard is already running.");
    this.kv.put(COMMIT_LEASE, now + COMMIT_LEASE_MS);
    return {
      kind: "proceed",
      state,
      sealed: this.sealedBlobs(tenantId),
      issuedRows: this.storedIssuedRows(tenantId),
    };
  }

  /** Records the commit and wipes every secret the wizard held. */
  private async recordCommit(tenantId: string, summary: CommitSummary, now: number): Promise<WizardState> {
    const state = this.stateFor(tenantId);
    this.deletePrefix(SEALED_PREFIX);
    this.kv.delete(ISSUED_ROWS);
    this.kv.delete(COMMIT_LEASE);
    state.status = "committed";
    state.commit = summary;
    state.current_step = "review";
    return this.save(state, now);
  }

  private async wipe(tenantId: string): Promise<void> {
    this.stateFor(tenantId);
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
  }

  // RPC surface: each call answers a WizardResult so refusals keep their code across the RPC boundary.
  create(tenantId: string, createdBy: string, now = Date.now()) {
    return guard(() => this.createState(tenantId, createdBy, now));
  }

  read(tenantId: string) {
    return guard(() => this.stateFor(tenantId));
  }

  sealed(tenantId: string) {
    return guard(() => this.sealedBlobs(tenantId));
  }

  /** The state and the sealed values together, as of one moment. */
  snapshot(tenantId: string) {
    return guard(
      (): WizardSnapshot => ({ state: this.stateFor(tenantId), sealed: this.sealedBlobs(tenantId) }),
    );
  }

  issuedRows(tenantId: string) {
    return guard(() => this.storedIssuedRows(tenantId));
  }

  apply(tenantId: string, mutation: WizardMutation, now = Date.now()) {
    return guard(() => this.applyMutation(tenantId, mutation, now));
  }

  beginCommit(tenantId: string, now = Date.now()) {
    return guard(() => this.startCommit(tenantId, now));
  }

  finishCommit(tenantId: string, summary: CommitSummary, now = Date.now()) {
    return guard(() => this.recordCommit(tenantId, summary, now));
  }

  /** Ends a commit attempt that wrote nothing (a refused batch), so a retry need not wait for the lease. */
  releaseCommit(tenantId: string) {
    return guard(() => {
      if (!this.stateFor(tenantId).commit) this.kv.delete(COMMIT_LEASE);
    });
  }

  abandon(tenantId: string) {
    return guard(() => this.wipe(tenantId));
  }

  override async alarm(): Promise<void> {
    const state = this.kv.get<WizardState>(STATE);
    if (!state) {
      await this.ctx.storage.deleteAlarm();
      return;
    }
    const idleUntil = Date.parse(state.expires_at);
    if (idleUntil > Date.now()) {
      await this.ctx.storage.setAlarm(idleUntil);
      return;
    }
    // Re-arm before the wipe: if it throws, this object retries on its own, even after the runtime's
    // bounded alarm retries have run out. Once the wipe has happened, the state is gone and a late alarm
    // only disarms itself, so the wipe runs exactly once.
    await this.ctx.storage.setAlarm(Date.now() + ALARM_RETRY_MS);
    await this.ctx.storage.deleteAll();
    await this.ctx.storage.deleteAlarm();
  }
}
