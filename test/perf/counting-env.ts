/**
 * Round trips per request, counted at the bindings: the app's own fetch runs against an env whose D1 and
 * Durable Object namespaces are the real ones behind counters (bench/d1-counter.mjs, bench/do-counter.mjs, the
 * same wrappers the bench's counting entry uses). A D1 batch is one round trip, as the Workers limit and the
 * network count it. Only what starts before the response is returned counts: the usage recorder's flush
 * (ctx.waitUntil, after USAGE_FLUSH_MS) and any other background work are not the request's latency.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { observeD1 } from "../../bench/d1-counter.mjs";
import { observeNamespace } from "../../bench/do-counter.mjs";
import worker from "../../src/index";
import { BASE, type CallOptions, freshClientIp } from "../helpers/api";

export const DURABLE_OBJECT_BINDINGS = ["KEY_LIMITER", "WIZARD_SESSION", "AUDIT_CHAIN"] as const;
export type DurableObjectBinding = (typeof DURABLE_OBJECT_BINDINGS)[number];

export interface RoundTrips {
  /** D1 round trips: one per statement run outside a batch, one per batch. */
  d1: number;
  /** What each D1 round trip was ("SELECT api_keys", "batch: ..."), in order. */
  d1Kinds: string[];
  statements: number;
  /** Stub calls (RPC methods and fetch) per namespace; a namespace with none is absent. */
  durableObjects: Partial<Record<DurableObjectBinding, string[]>>;
}

export interface CountedResponse<T> {
  status: number;
  body: T;
  trips: RoundTrips;
}

const pending: ExecutionContext[] = [];

/** Waits for the background work (usage flushes) of every counted request so far: call it in afterAll. */
export async function settleCountedRequests(): Promise<void> {
  await Promise.all(pending.splice(0).map((ctx) => waitOnExecutionContext(ctx)));
}

/** `call` (test/helpers/api.ts) through the app's fetch with counting bindings; the counts come back with the answer. */
export async function countedCall<T = Record<string, unknown>>(
  method: string,
  path: string,
  options: CallOptions = {},
): Promise<CountedResponse<T>> {
  const trips: RoundTrips = { d1: 0, d1Kinds: [], statements: 0, durableObjects: {} };
  let responded = false;
  const countingEnv: Env = {
    ...env,
    DB: observeD1(env.DB, {
      onStart({ kind, statements }) {
        if (responded) return;
        trips.d1 += 1;
        trips.d1Kinds.push(kind);
        trips.statements += statements;
      },
    }),
  };
  for (const binding of DURABLE_OBJECT_BINDINGS) {
    Object.assign(countingEnv, {
      [binding]: observeNamespace(env[binding], {
        onCall({ method: called }) {
          if (responded) return;
          trips.durableObjects[binding] ??= [];
          trips.durableObjects[binding].push(called);
        },
      }),
    });
  }
  const headers = new Headers(options.headers);
  if (!headers.has("cf-connecting-ip")) headers.set("cf-connecting-ip", freshClientIp());
  if (options.key) headers.set("authorization", `Bearer ${options.key}`);
  if (options.body !== undefined) headers.set("content-type", "application/json");
  const body = options.body === undefined ? undefined : JSON.stringify(options.body);
  const ctx = createExecutionContext();
  pending.push(ctx);
  const response = await worker.fetch(
    new Request(`${BASE}${path}`, { method, headers, body }),
    countingEnv,
    ctx,
  );
  responded = true;
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : null) as T, trips };
}

/** Stub calls of one namespace in `trips` (0 when none). */
export function doCalls(trips: RoundTrips, binding: DurableObjectBinding): number {
  return trips.durableObjects[binding]?.length ?? 0;
}
