import { env } from "cloudflare:workers";
import { sql } from "drizzle-orm";
import { expect } from "vitest";
import { IntegrityError } from "../../src/crypto/envelope";
import { database } from "../../src/db/client";

/** Test-side base64 helpers, independent of src/crypto/encoding so a bug there cannot hide here. */
export function b64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

export function unb64(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function randomBytes(length: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  // getRandomValues is capped at 65,536 bytes per call.
  for (let i = 0; i < length; i += 65_536)
    crypto.getRandomValues(out.subarray(i, Math.min(length, i + 65_536)));
  return out;
}

export function randomMasterKey(): string {
  return b64(randomBytes(32));
}

/** The blob with bit `bit` (0 = most significant bit of byte 0) inverted, re-encoded canonically. */
export function flipBit(bytes: Uint8Array, bit: number): string {
  const copy = bytes.slice();
  copy[bit >> 3] = (copy[bit >> 3] as number) ^ (0x80 >> (bit & 7));
  return b64(copy);
}

export function indexOfBytes(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

export interface Outcome {
  label: string;
  result: string;
}

/**
 * Runs `attempt` on every case (in bounded parallel batches) and returns the cases that did NOT
 * reject with an IntegrityError, described: an empty list means every case failed closed, typed.
 */
export async function casesNotRejectedWithIntegrityError<T>(
  cases: readonly T[],
  attempt: (item: T) => Promise<unknown>,
  label: (item: T, index: number) => string = (_item, index) => `case ${index}`,
  batchSize = 512,
): Promise<Outcome[]> {
  const bad: Outcome[] = [];
  for (let start = 0; start < cases.length; start += batchSize) {
    const batch = cases.slice(start, start + batchSize);
    const settled = await Promise.allSettled(
      batch.map(async (item) => {
        // Run synchronous throws through the same path as rejections.
        return attempt(item);
      }),
    );
    settled.forEach((outcome, offset) => {
      const index = start + offset;
      if (outcome.status === "fulfilled") {
        bad.push({ label: label(cases[index] as T, index), result: "resolved (returned plaintext)" });
      } else if (!(outcome.reason instanceof IntegrityError)) {
        const reason = outcome.reason as { name?: string; message?: string } | undefined;
        bad.push({ label: label(cases[index] as T, index), result: `${reason?.name}: ${reason?.message}` });
      }
    });
  }
  return bad;
}

/** Asserts the promise rejects with an IntegrityError (the type, not just "throws"). */
export async function expectIntegrityError(
  promise: Promise<unknown>,
  message?: RegExp,
): Promise<IntegrityError> {
  let error: unknown;
  let resolved: unknown;
  let didResolve = false;
  try {
    resolved = await promise;
    didResolve = true;
  } catch (caught) {
    error = caught;
  }
  expect(didResolve, `expected an IntegrityError, but it resolved to ${String(resolved)}`).toBe(false);
  expect(error).toBeInstanceOf(IntegrityError);
  if (message) expect((error as Error).message).toMatch(message);
  return error as IntegrityError;
}

export function db() {
  return database(env.DB);
}

export const COUNTED_TABLES = ["tenants", "data_keys", "api_keys", "audit_log", "keyring"] as const;

export async function rowCounts(): Promise<Record<(typeof COUNTED_TABLES)[number], number>> {
  const counts = {} as Record<(typeof COUNTED_TABLES)[number], number>;
  for (const table of COUNTED_TABLES) {
    const row = await db().get<{ n: number }>(sql.raw(`SELECT count(*) AS n FROM ${table}`));
    counts[table] = Number(row?.n);
  }
  return counts;
}
