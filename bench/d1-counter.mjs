// A D1 binding behind an observer (bench only; imported by the bench entry modules, never deployed).
//
// `observeD1(db, { onCall, onStart, delayMs })` returns an object that is itself a faithful D1Database
// (prepare / bind / first / all / run / raw, batch, exec, withSession with getBookmark, dump when the binding
// has it), so the worker's code (raw D1 or drizzle) runs unchanged against it. Every call that reaches D1
// is one "call": a statement's first/all/run/raw, a batch (one call however many statements: the boundary
// the Workers limit counts, "queries per Worker invocation", and one network round trip when deployed), an
// exec. For each call:
//
// - `onStart({ kind, statements })` (optional) runs synchronously before anything else, so a caller can tell
//   which calls started before a response was returned even if they finish after it;
// - when `delayMs` > 0, the call first waits that long (`scheduler.wait` in workerd, else setTimeout): the
//   latency injection of the latency stage, standing in for the network between a Worker and D1;
// - the call is forwarded to the real binding;
// - `onCall({ kind, statements, ms, ok })` runs when it settles (also when it fails): `ms` is the wall time the
//   caller waited, injected delay included (Date.now() advances across I/O in workerd).
//
// `kind` names the SQL: "SELECT api_keys", "INSERT rotation_runs", "batch: SELECT a + INSERT b",
// "exec: DELETE x", ... (the verb and the first table named).

/** "SELECT api_keys", "INSERT rotation_runs", ...: the verb and the first table named. */
export function kindOf(sql) {
  const text = sql.replace(/\s+/g, " ").trim();
  const verb = /^(WITH|SELECT|INSERT|UPDATE|DELETE|PRAGMA)/i.exec(text)?.[1]?.toUpperCase() ?? "OTHER";
  const target =
    verb === "INSERT"
      ? /\bINTO\s+["`]?(\w+)/i.exec(text)
      : verb === "UPDATE"
        ? /^UPDATE\s+["`]?(\w+)/i.exec(text)
        : /\bFROM\s+["`]?(\w+)/i.exec(text);
  return `${verb} ${target?.[1] ?? "?"}`;
}

const wait = (ms) =>
  globalThis.scheduler?.wait
    ? globalThis.scheduler.wait(ms)
    : new Promise((resolve) => setTimeout(resolve, ms));

/** The hooks and the delay, shared by a database, its sessions and their statements. */
class Observer {
  constructor({ onCall, onStart, delayMs = 0 } = {}) {
    this.onCall = onCall;
    this.onStart = onStart;
    this.delayMs = delayMs;
  }

  async call(kind, statements, forward) {
    this.onStart?.({ kind, statements });
    const started = Date.now();
    let ok = false;
    try {
      if (this.delayMs > 0) await wait(this.delayMs);
      const result = await forward();
      ok = true;
      return result;
    } finally {
      this.onCall?.({ kind, statements, ms: Date.now() - started, ok });
    }
  }
}

class ObservedStatement {
  constructor(inner, sql, observer) {
    this.inner = inner;
    this.sql = sql;
    this.observer = observer;
  }
  bind(...values) {
    return new ObservedStatement(this.inner.bind(...values), this.sql, this.observer);
  }
  first(column) {
    return this.observer.call(kindOf(this.sql), 1, () =>
      column === undefined ? this.inner.first() : this.inner.first(column),
    );
  }
  all() {
    return this.observer.call(kindOf(this.sql), 1, () => this.inner.all());
  }
  run() {
    return this.observer.call(kindOf(this.sql), 1, () => this.inner.run());
  }
  raw(options) {
    return this.observer.call(kindOf(this.sql), 1, () =>
      options === undefined ? this.inner.raw() : this.inner.raw(options),
    );
  }
}

/** D1 accepts only its own statements in a batch: hand it the real ones. */
const unwrap = (statement) => (statement instanceof ObservedStatement ? statement.inner : statement);
const batchKind = (statements) =>
  `batch: ${statements.map((s) => (s instanceof ObservedStatement ? kindOf(s.sql) : "?")).join(" + ")}`;

/** What a D1Database and a D1DatabaseSession have in common: prepare and batch. */
class ObservedQueryable {
  constructor(inner, observer) {
    this.inner = inner;
    this.observer = observer;
  }
  prepare(sql) {
    return new ObservedStatement(this.inner.prepare(sql), sql, this.observer);
  }
  batch(statements) {
    return this.observer.call(batchKind(statements), statements.length, () =>
      this.inner.batch(statements.map(unwrap)),
    );
  }
}

class ObservedSession extends ObservedQueryable {
  getBookmark() {
    return this.inner.getBookmark();
  }
}

class ObservedD1 extends ObservedQueryable {
  constructor(inner, observer) {
    super(inner, observer);
    // dump() is deprecated and absent from some bindings: offer it only when the binding has it.
    if (typeof inner.dump === "function") this.dump = () => inner.dump();
  }
  exec(sql) {
    return this.observer.call(`exec: ${kindOf(sql)}`, 1, () => this.inner.exec(sql));
  }
  withSession(constraintOrBookmark) {
    return new ObservedSession(this.inner.withSession(constraintOrBookmark), this.observer);
  }
}

/**
 * `db` behind the observer: `onCall({ kind, statements, ms, ok })` after every call that reached D1 (a batch
 * is one), `onStart({ kind, statements })` before it, each call delayed by `delayMs` first when > 0.
 */
export function observeD1(db, { onCall, onStart, delayMs = 0 } = {}) {
  return new ObservedD1(db, new Observer({ onCall, onStart, delayMs }));
}
