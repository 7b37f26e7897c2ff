/**
 * A live test of a stored credential: open its current version, probe the provider, record the outcome.
 * `POST /credentials/{id}/test` and the scheduled re-tests (src/lifecycle/retests.ts) both run this, so
 * the two cannot disagree about what a test writes or which status change is an event.
 */
import { and, eq, sql } from "drizzle-orm";
import type { AuditActor } from "../audit/audit-log";
import { commitWithAudit } from "../audit/audit-log";
import { type ProbeResult, runProbe } from "../catalog/run-probe";
import type { Database } from "../db/client";
import { credentials } from "../db/schema";
import type { Bindings } from "../env";
import { ApiError } from "../errors";
import { eventStatement } from "../lifecycle/events";
import { evaluateTenantNow } from "../monitoring/evaluate-now";
import { unseal } from "../vault/keyring";
import { findVersionRow, openVersion, type VersionRow } from "./credential-versions";
import { providerFetch } from "./provider-fetch";
import { requireService } from "./require-service";

type CredentialRow = typeof credentials.$inferSelect;

/** A provider-reported expiry this close (or closer) raises `credential.expiring`. */
export const EXPIRY_WARNING_MS = 14 * 86_400_000;

/**
 * Reasons that mean "the provider did not answer", not "the provider said no": asking again later may
 * give a verdict. Fixed reason words of src/catalog/run-probe.ts (and providers' own rate-limit answers).
 */
const UNAVAILABLE_REASONS: ReadonlySet<string> = new Set([
  "provider_error",
  "timeout",
  "network_error",
  "rate_limited",
]);

/** Whether `result` is the provider being unavailable (5xx, timeout, network failure, 429) rather than a verdict. */
export function providerUnavailable(result: ProbeResult): boolean {
  return result.status === "unknown" && UNAVAILABLE_REASONS.has(result.reason);
}

/** Probes one stored version of the credential. The opened values live only inside this call. */
export async function probeVersion(
  env: Bindings,
  db: Database,
  row: CredentialRow,
  version: VersionRow,
): Promise<ProbeResult> {
  const fields = await openVersion(await unseal(env, db), db, version);
  return runProbe(requireService(row.serviceId), fields, {
    fetch: providerFetch(env),
    environment: row.environment,
  });
}

/** Probes the credential's current version. */
export async function probeCurrentVersion(
  env: Bindings,
  db: Database,
  row: CredentialRow,
): Promise<ProbeResult> {
  const version = await findVersionRow(db, row, row.currentVersion);
  if (!version) throw new ApiError("NOT_FOUND", "No such version of this credential.");
  return probeVersion(env, db, row, version);
}

export interface RecordTestOptions {
  /** When the test ran (epoch ms): `last_tested_at` and the events' time. */
  now: number;
  /**
   * Names this test among all tests of the credential (a request id, or a scheduled re-test's due time), so
   * a re-run of the same test records its status-change event once.
   */
  occasion: string;
  /** Scheduled re-tests: the earliest next re-test. It never moves an already later one back. */
  nextTestAt?: number;
}

/**
 * The statements that record `result` on the credential it was run against, and its events:
 * `credential.test_failed` when it now fails and did not fail before (a first test that fails counts: the
 * stored value never worked), `credential.test_recovered` when a failing one passes again, and
 * `credential.expiring` once per provider-reported expiry that falls within EXPIRY_WARNING_MS.
 * Event details carry fixed reason words and times only, never a field value.
 */
export function testResultStatements(
  db: Database,
  row: CredentialRow,
  result: ProbeResult,
  options: RecordTestOptions,
) {
  const { now, occasion, nextTestAt } = options;
  const update = db
    .update(credentials)
    .set({
      lastTestStatus: result.status,
      lastTestReason: result.reason,
      lastTestLatencyMs: result.latency_ms,
      lastTestedAt: now,
      ...(result.expires_at !== undefined ? { providerExpiresAt: result.expires_at } : {}),
      ...(result.account !== undefined ? { providerAccount: result.account } : {}),
      ...(nextTestAt !== undefined
        ? { nextTestAt: sql`max(coalesce(${credentials.nextTestAt}, 0), ${nextTestAt})` }
        : {}),
    })
    // Only while the probed version is still current: a rotation that promoted a new version meanwhile
    // keeps its own test result.
    .where(
      and(
        eq(credentials.tenantId, row.tenantId),
        eq(credentials.id, row.id),
        eq(credentials.currentVersion, row.currentVersion),
      ),
    );
  const subject = { tenantId: row.tenantId, subjectType: "credential" as const, subjectId: row.id, at: now };
  const events = [];
  const previous = row.lastTestStatus;
  if (result.status === "invalid" && previous !== "invalid") {
    events.push(
      eventStatement(db, {
        ...subject,
        kind: "credential.test_failed",
        dedupeKey: `${row.id}:${occasion}`,
        detail: { reason: result.reason, previous_status: previous, version: row.currentVersion },
      }),
    );
  }
  if (result.status === "valid" && previous === "invalid") {
    events.push(
      eventStatement(db, {
        ...subject,
        kind: "credential.test_recovered",
        dedupeKey: `${row.id}:${occasion}`,
        detail: { version: row.currentVersion },
      }),
    );
  }
  const expiresAt = result.expires_at;
  if (typeof expiresAt === "number" && expiresAt - now <= EXPIRY_WARNING_MS) {
    events.push(
      eventStatement(db, {
        ...subject,
        kind: "credential.expiring",
        // One warning per expiry date, however many tests see it; a renewed credential warns again.
        dedupeKey: `${row.id}:${expiresAt}`,
        detail: { expires_at: expiresAt, version: row.currentVersion },
      }),
    );
  }
  return [update, ...events];
}

/**
 * Tests the credential's current version (`current`, read by the caller together with the row) now and records
 * the outcome with its audit row; resolves to the probe's result.
 */
export async function liveTestCredential(
  env: Bindings,
  db: Database,
  actor: AuditActor,
  row: CredentialRow,
  current: VersionRow,
  now: () => number = Date.now,
): Promise<ProbeResult> {
  const result = await probeVersion(env, db, row, current);
  await recordLiveTest(env, db, actor, row, result, { now: now(), occasion: actor.requestId });
  return result;
}

/** Records a probe's outcome, its events and the `credential.test` audit row in one batch. */
export async function recordLiveTest(
  env: Bindings,
  db: Database,
  actor: AuditActor,
  row: CredentialRow,
  result: ProbeResult,
  options: RecordTestOptions,
): Promise<void> {
  await commitWithAudit(env, actor, testResultStatements(db, row, result, options), [
    {
      action: "credential.test",
      targetType: "credential",
      targetId: row.id,
      detail: { status: result.status, reason: result.reason },
    },
  ]);
  if (result.status === "invalid" && row.lastTestStatus !== "invalid") {
    await evaluateTenantNow(env, row.tenantId, options.now);
  }
}
