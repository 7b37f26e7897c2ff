// Entry module of the scheduler stage only (copied next to the bundle as scheduler-entry.mjs; never deployed).
// The worker's own scheduled handler runs unchanged; this entry gives it an env in which three bindings are
// observed or stood in for, and answers `GET /__bench/scheduler` with what it saw:
//
// - DB: the real D1 binding behind a counter (bench/d1-counter.mjs). Every call that reaches D1 (a statement's run/all/first/raw,
//   a batch, an exec) counts once, with its statements and wall time, by the kind of SQL it was. That is the
//   boundary the Workers limit counts ("queries per Worker invocation"), whichever code made the call
//   (the rotation tick, the re-test enqueue, the purges, raw D1 or drizzle).
// - KEY_ROTATION, CREDENTIAL_ROTATION: recorders instead of Miniflare's Workflows engine. Miniflare runs every
//   created instance in this same workerd process: the 11,000 rotations the tick starts would run their
//   steps (D1 batches, audit rows, handoffs) on the core being measured, for minutes, and no figure would be
//   the tick's. The recorder keeps the binding's contract that the scheduler relies on: `createBatch` skips ids
//   that exist, `create` refuses one, `get` finds only created instances. It copies each request with
//   structuredClone, the least an RPC to the Workflows service costs the caller.
// - RETEST_QUEUE: a recorder too (the stage seeds no credential due for a re-test; a message would otherwise
//   reach the consumer, which probes real providers).
import { observeD1 } from "./d1-counter.mjs";
import worker from "./index.js";

export * from "./index.js";

const ticks = [];
/** Ids of every Workflow instance created so far, per binding. */
const created = { KEY_ROTATION: new Set(), CREDENTIAL_ROTATION: new Set() };

/** Counts every D1 call of a tick by kind, with its statements and wall time (bench/d1-counter.mjs). */
function countingD1(db, tick) {
  return observeD1(db, {
    onCall({ kind, statements, ms }) {
      tick.d1.byKind[kind] ??= { calls: 0, statements: 0, ms: 0 };
      const entry = tick.d1.byKind[kind];
      entry.calls++;
      entry.statements += statements;
      entry.ms += ms;
      tick.d1.calls++;
      tick.d1.statements += statements;
    },
  });
}

class RecordingWorkflow {
  constructor(binding, tick) {
    this.ids = created[binding];
    this.calls = tick.workflows[binding] = { createBatch: 0, create: 0, get: 0, created: 0, skipped: 0 };
    this.events = tick.events;
  }
  instance(id) {
    const events = this.events;
    return {
      id,
      async status() {
        return { status: "queued" };
      },
      async sendEvent(event) {
        structuredClone(event);
        events.push({ id, type: event.type });
      },
      async pause() {},
      async resume() {},
      async terminate() {},
      async restart() {},
    };
  }
  add(options) {
    if (this.ids.has(options.id)) {
      this.calls.skipped++;
      return false;
    }
    this.ids.add(options.id);
    this.calls.created++;
    return true;
  }
  /** Both documented forms: `{ instances }` answers `{ created, errors }`, the older array form the created. */
  async createBatch(options) {
    this.calls.createBatch++;
    const batch = Array.isArray(options) ? options : options.instances;
    if (batch.length > 100) throw new Error(`createBatch takes at most 100 instances (got ${batch.length})`);
    const created = [];
    const errors = [];
    structuredClone(batch).forEach((instance, index) => {
      if (this.add(instance)) created.push(this.instance(instance.id));
      else
        errors.push({
          index,
          id: instance.id,
          code: 10405,
          message: "workflows.api.error.instance.already_exists",
        });
    });
    return Array.isArray(options) ? created : { created, errors };
  }
  async create(options = {}) {
    this.calls.create++;
    const copy = structuredClone({ ...options, id: options.id ?? crypto.randomUUID() });
    if (!this.add(copy)) throw new Error(`instance ${copy.id} already exists`);
    return this.instance(copy.id);
  }
  async get(id) {
    this.calls.get++;
    if (!this.ids.has(id)) throw new Error(`instance ${id} not found`);
    return this.instance(id);
  }
}

class RecordingQueue {
  constructor(tick) {
    this.tick = tick;
  }
  async send(body) {
    structuredClone(body);
    this.tick.queue.calls++;
    this.tick.queue.messages++;
  }
  async sendBatch(messages) {
    structuredClone(messages);
    this.tick.queue.calls++;
    this.tick.queue.messages += messages.length;
  }
}

function observedEnv(env, tick) {
  return {
    ...env,
    DB: countingD1(env.DB, tick),
    KEY_ROTATION: new RecordingWorkflow("KEY_ROTATION", tick),
    CREDENTIAL_ROTATION: new RecordingWorkflow("CREDENTIAL_ROTATION", tick),
    RETEST_QUEUE: new RecordingQueue(tick),
    // The alerts stage's tick relays the alerts it fired to this queue (src/monitoring/outbox.ts).
    ALERT_QUEUE: new RecordingQueue(tick),
  };
}

function stats(url) {
  const withIds = url.searchParams.get("ids") === "1";
  const body = {
    ticks,
    created: Object.fromEntries(
      Object.entries(created).map(([binding, ids]) => [binding, withIds ? [...ids] : ids.size]),
    ),
  };
  return new Response(JSON.stringify(body), { headers: { "content-type": "application/json" } });
}

export default {
  fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === "/__bench/scheduler") return stats(url);
    return worker.fetch(request, env, ctx);
  },
  scheduled(controller, env, ctx) {
    const tick = {
      scheduledTime: controller.scheduledTime,
      d1: { calls: 0, statements: 0, byKind: {} },
      workflows: {},
      events: [],
      queue: { calls: 0, messages: 0 },
      error: null,
      ms: 0,
    };
    ticks.push(tick);
    const started = Date.now();
    // The worker hands the tick to waitUntil; the wrapper notes when it settles and whether it failed.
    const observedCtx = {
      waitUntil(promise) {
        ctx.waitUntil(
          Promise.resolve(promise).then(
            () => {
              tick.ms = Date.now() - started;
            },
            (error) => {
              tick.ms = Date.now() - started;
              tick.error = String(error?.stack ?? error);
              for (const inner of error?.errors ?? []) tick.error += `\n${String(inner?.stack ?? inner)}`;
            },
          ),
        );
      },
      passThroughOnException() {
        ctx.passThroughOnException();
      },
      props: ctx.props,
    };
    return worker.scheduled(controller, observedEnv(env, tick), observedCtx);
  },
};
