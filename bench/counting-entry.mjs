// Entry module of the round-trips stage only (copied next to the bundle as counting-entry.mjs; never deployed).
// It serves every request through the harness's usual entry (bench-entry.mjs, so the in-isolate ratelimit of
// bench/worker-entry.mjs applies unchanged) with an env whose D1 binding and Durable Object namespaces count
// what each request does (bench/d1-counter.mjs, bench/do-counter.mjs), and answers `GET /__bench/round-trips`
// with the records of the requests served since the last time it was asked (and forgets them).
//
// Per request:
// - `d1`: the kinds of the D1 calls the worker made (a batch is one call, one round trip when deployed);
// - `durableObjects`: the stub calls (RPC methods, fetch) per namespace;
// - `auditWriter`: the D1 calls the tenant's AuditChain object made while the request was in flight (the
//   audited write batch runs there). No async context crosses into a Durable Object, so these are attributed
//   to the request in flight: the stage sends one request at a time.
// Only calls that start before the response is returned count: the usage recorder's flush (ctx.waitUntil,
// USAGE_FLUSH_MS later) is background work, not the request's latency. An AsyncLocalStorage scope ties each
// worker-side call to its own request, so a flush that fires during a later request is not charged to it.
import { AsyncLocalStorage } from "node:async_hooks";
import benchEntry from "./bench-entry.mjs";
import { observeD1 } from "./d1-counter.mjs";
import { observeNamespace } from "./do-counter.mjs";
import { AuditChain as CountedAuditChain } from "./index.js";

export * from "./index.js";

const DURABLE_OBJECT_BINDINGS = ["KEY_LIMITER", "WIZARD_SESSION", "AUDIT_CHAIN"];
const ROUND_TRIPS_PATH = "/__bench/round-trips";

const scope = new AsyncLocalStorage();
/** The request being served (the stage sends one at a time): what the AuditChain object's calls count toward. */
let inFlight = null;
let records = [];

const counting = (count) => (call) => {
  const record = scope.getStore();
  if (record && !record.responded) count(record, call);
};

const countingEnvs = new WeakMap();

/** One counting env per real env (so bench-entry's own per-env state, the ratelimit counters, stays put). */
function countingEnv(env) {
  let wrapped = countingEnvs.get(env);
  if (!wrapped) {
    wrapped = {
      ...env,
      DB: observeD1(env.DB, {
        onStart: counting((record, { kind, statements }) => {
          record.d1.push(kind);
          record.statements += statements;
        }),
      }),
    };
    for (const binding of DURABLE_OBJECT_BINDINGS) {
      wrapped[binding] = observeNamespace(env[binding], {
        onCall: counting((record, { method }) => {
          record.durableObjects[binding] ??= [];
          record.durableObjects[binding].push(method);
        }),
      });
    }
    countingEnvs.set(env, wrapped);
  }
  return wrapped;
}

/** The tenant's audit writer, with its own D1 binding counted toward the request in flight. */
export class AuditChain extends CountedAuditChain {
  constructor(ctx, env) {
    super(ctx, {
      ...env,
      DB: observeD1(env.DB, {
        onStart({ kind, statements }) {
          if (!inFlight || inFlight.responded) return;
          inFlight.auditWriter.push(kind);
          inFlight.auditWriterStatements += statements;
        },
      }),
    });
  }
}

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === ROUND_TRIPS_PATH) {
      const answer = records;
      records = [];
      return Response.json(answer);
    }
    const record = {
      method: request.method,
      path: url.pathname,
      status: 0,
      d1: [],
      statements: 0,
      durableObjects: {},
      auditWriter: [],
      auditWriterStatements: 0,
      responded: false,
    };
    inFlight = record;
    try {
      const response = await scope.run(record, () => benchEntry.fetch(request, countingEnv(env), ctx));
      record.status = response.status;
      return response;
    } finally {
      record.responded = true;
      if (inFlight === record) inFlight = null;
      records.push(record);
    }
  },
  scheduled(controller, env, ctx) {
    return benchEntry.scheduled(controller, env, ctx);
  },
};
