// The round-trips stage (issue 13, part 2): D1 round trips and Durable Object calls per operation, counted at
// the bindings (bench/counting-entry.mjs) while the built worker serves each operation through its HTTP API.
// `BENCH_ONLY=roundtrips npm run bench`, or after stage 1 of the full bench. See bench/README.md.
//
// One request at a time, each operation on a subject in the state it names, after a warm-up that leaves the
// isolate as a running deployment has it (the caller's key cached, the keyring unsealed, the tenant's DEK and
// the audit chain key unwrapped, each AuditChain object past its first write): so each row is what the
// operation itself costs, not what a cold isolate costs once. Only what starts before the response is
// returned counts (the usage recorder's flush is background work).
import { createServer } from "node:http";
import { startInstance } from "./instance.mjs";
import { breakChecksum, generateKey, randomBase62 } from "./keys.mjs";
import { table } from "./report.mjs";
import { log } from "./system.mjs";

/** The goal (issue 13): a read path at most one D1 round trip; a write path at most one read batch plus one
 * write batch plus the audit writer. Management calls add their authentication, fresh from D1 by design
 * (threat model case 29). Audited writes run their batch in the tenant's AuditChain object. */
const READ = { d1: 1, auditChain: 0, auditWriter: 0, label: "<= 1 read" };
const GOALS = {
  "verify warm": { d1: 0, auditChain: 0, auditWriter: 0, label: "0 (isolate cache)" },
  "verify cold": READ,
  "verify unknown": READ,
  "verify bad checksum": { d1: 0, auditChain: 0, auditWriter: 0, label: "0 (no I/O)" },
  "management auth": { ...READ, label: "<= 1 read (fresh)" },
};
const WRITE = { d1: 2, auditChain: 1, auditWriter: 1, label: "auth + <= 1 read + audit writer (1 batch)" };
// The wizard's draft lives in its own Durable Object, not in D1: a commit reads it, takes its lease (after the
// step-up, allowlist and validation checks, so a refused attempt never blocks another) and finishes it.
GOALS["wizard commit"] = {
  ...WRITE,
  others: 3,
  label: "auth + <= 1 read + audit writer + wizard state (read, lease, finish)",
};

/** Loopback stand-in for the providers a live test probes (PROVIDER_STANDIN_ORIGIN: `/<host><path>`). */
async function startProviderStandIn() {
  const answers = {
    "/api.stripe.com/v1/balance": { object: "balance", available: [], pending: [], livemode: false },
    "/api.openai.com/v1/models": { object: "list", data: [{ id: "gpt-4o", object: "model" }] },
  };
  const server = createServer((request, response) => {
    const answer = answers[new URL(request.url, "http://x").pathname];
    response.writeHead(answer ? 200 : 404, { "content-type": "application/json" });
    response.end(JSON.stringify(answer ?? { error: "no stand-in for this path" }));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { origin: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

const stripeKey = (mode) => `sk_${mode}_${randomBase62(32)}`;
const openaiKey = () => `sk-proj-${randomBase62(48)}T3BlbkFJ${randomBase62(48)}`;

export async function runRoundTripsStage(shared) {
  const standIn = await startProviderStandIn();
  const instance = await startInstance({
    ...shared,
    name: "roundtrips",
    storedKeys: 100,
    options: {
      entry: "counting-entry.mjs",
      leanRatelimit: true,
      ratelimitLimit: shared.ratelimitLimit,
      vars: { PROVIDER_STANDIN_ORIGIN: standIn.origin },
    },
  });
  try {
    return await measureOperations(instance, shared.secrets);
  } finally {
    await instance.stop();
    standIn.close();
  }
}

async function measureOperations(instance, secrets) {
  const call = async (method, path, token, body, headers = {}) => {
    const response = await fetch(new URL(path, instance.url), {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        "cf-connecting-ip": "203.0.113.9",
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
  };
  const records = async () => (await fetch(new URL("/__bench/round-trips", instance.url))).json();
  const expectStatus = (label, answer, status) => {
    if (answer.status !== status)
      throw new Error(`${label}: ${answer.status} ${JSON.stringify(answer.body)} (expected ${status})`);
    return answer.body;
  };
  const rows = [];
  /** Runs one operation alone and keeps its record (the last request it made). */
  const measure = async (label, run) => {
    await records();
    const checked = await run();
    const all = await records();
    const record = all.at(-1);
    rows.push({ label, record, checked });
    log(
      `roundtrips: ${label}: D1 ${record.d1.length}, DO ${JSON.stringify(record.durableObjects)}, audit writer ${record.auditWriter.length}`,
    );
  };
  const admin = instance.adminKey;
  const cachedVerify = (key) => call("POST", "/api/v1/keys/verify", admin, { key });
  const storeBody = () => ({
    service: "stripe",
    environment: "development",
    fields: { secret_key: stripeKey("test") },
  });

  // Warm-up: every path once, as a running isolate has them.
  expectStatus("warm-up verify", await cachedVerify(instance.warm.key), 200);
  const warmupKey = expectStatus(
    "warm-up create",
    await call("POST", "/api/v1/keys", admin, { name: "w" }),
    201,
  );
  expectStatus("warm-up revoke", await call("POST", `/api/v1/keys/${warmupKey.id}/revoke`, admin), 200);
  const credential = expectStatus(
    "warm-up store",
    await call("POST", "/api/v1/credentials", admin, storeBody()),
    201,
  );
  expectStatus(
    "warm-up reveal",
    await call("POST", `/api/v1/credentials/${credential.id}/reveal`, admin, {}),
    200,
  );
  const verifier = expectStatus(
    "verifier key",
    await call("POST", "/api/v1/keys", admin, { name: "verifier", scopes: ["keys:verify"] }),
    201,
  );

  await measure("verify warm", async () => {
    const body = expectStatus("verify warm", await cachedVerify(instance.warm.key), 200);
    if (body.code !== "VALID") throw new Error(`verify warm: ${JSON.stringify(body)}`);
  });
  await measure("verify cold", async () => {
    // A seeded key nothing has looked up: in no cache tier.
    const body = expectStatus("verify cold", await cachedVerify(instance.seeded[0].key), 200);
    if (body.code !== "VALID") throw new Error(`verify cold: ${JSON.stringify(body)}`);
  });
  await measure("verify unknown", async () => {
    const body = expectStatus("verify unknown", await cachedVerify(generateKey(instance.prefix)), 200);
    if (body.code !== "NOT_FOUND") throw new Error(`verify unknown: ${JSON.stringify(body)}`);
  });
  await measure("verify bad checksum", async () => {
    const body = expectStatus("bad checksum", await cachedVerify(breakChecksum(instance.warm.key)), 200);
    if (body.code !== "INVALID_FORMAT") throw new Error(`verify bad checksum: ${JSON.stringify(body)}`);
  });
  // Authentication alone: a valid key without the route's scope is refused after authentication and before the
  // handler, so every call this request makes is the management authentication's.
  await measure("management auth", async () => {
    expectStatus("management auth", await call("GET", "/api/v1/keys", verifier.key), 403);
  });
  let created;
  await measure("key create", async () => {
    created = expectStatus("key create", await call("POST", "/api/v1/keys", admin, { name: "created" }), 201);
  });
  await measure("key rotate", async () => {
    expectStatus("key rotate", await call("POST", `/api/v1/keys/${created.id}/rotate`, admin, {}), 201);
  });
  await measure("key revoke", async () => {
    expectStatus("key revoke", await call("POST", `/api/v1/keys/${verifier.id}/revoke`, admin), 200);
  });
  let stored;
  await measure("credential store", async () => {
    stored = expectStatus(
      "credential store",
      await call("POST", "/api/v1/credentials", admin, storeBody()),
      201,
    );
  });
  await measure("credential reveal", async () => {
    expectStatus("reveal", await call("POST", `/api/v1/credentials/${stored.id}/reveal`, admin, {}), 200);
  });
  await measure("credential test", async () => {
    const body = expectStatus(
      "test",
      await call("POST", `/api/v1/credentials/${stored.id}/test`, admin),
      200,
    );
    if (body.status !== "valid") throw new Error(`credential test: ${JSON.stringify(body)}`);
  });
  await measure("wizard commit", () => commitWizard(call, expectStatus, secrets));
  return { rows };
}

/** A wizard walked to its review step on a tenant of its own (a commit puts the tenant's policy in force). */
async function commitWizard(call, expectStatus, secrets) {
  const { admin_key: admin } = expectStatus(
    "wizard tenant",
    await call("POST", "/api/v1/tenants", secrets.BOOTSTRAP_TOKEN, { name: "wizard" }),
    201,
  );
  const wizard = (method, path, body) => call(method, `/api/v1/wizard${path}`, admin, body);
  const { id } = expectStatus("wizard start", await wizard("POST", "", {}), 201);
  const steps = [
    ["PUT", `/${id}/steps/services`, { service_ids: ["stripe", "openai"] }],
    [
      "PUT",
      `/${id}/steps/security`,
      {
        security_level: "enterprise",
        environment: "production",
        rotation_policy: "90_days",
        ip_allowlist: ["203.0.113.0/24"],
        require_2fa: true,
        compliance: ["pci_dss", "soc2"],
      },
    ],
    ["POST", `/${id}/keys/stripe`, { fields: { secret_key: stripeKey("live") } }],
    ["POST", `/${id}/keys/openai`, { fields: { api_key: openaiKey() } }],
    ["PUT", `/${id}/steps/keys`, {}],
    ["POST", `/${id}/tests`, {}],
    ["PUT", `/${id}/steps/testing`, {}],
    [
      "PUT",
      `/${id}/steps/monitoring`,
      {
        channels: [{ kind: "email", name: "Ops", to: "ops@example.com" }],
        rules: [{ kind: "expiry_warning", days_before: 14, channel_names: ["Ops"] }],
      },
    ],
  ];
  for (const [method, path, body] of steps) {
    const answer = await wizard(method, path, body);
    if (answer.status >= 300)
      throw new Error(`wizard ${method} ${path}: ${answer.status} ${JSON.stringify(answer.body)}`);
  }
  const committed = expectStatus("wizard commit", await wizard("POST", `/${id}/commit`, {}), 200);
  if (committed.state.status !== "committed")
    throw new Error(`wizard commit: ${JSON.stringify(committed.state)}`);
}

const countsOf = (record) => {
  const auditChain = record.durableObjects.AUDIT_CHAIN?.length ?? 0;
  const others = Object.entries(record.durableObjects)
    .filter(([binding]) => binding !== "AUDIT_CHAIN")
    .reduce((total, [, calls]) => total + calls.length, 0);
  return { d1: record.d1.length, auditChain, auditWriter: record.auditWriter.length, others };
};

/** Within the goal: D1 reads (worker side) and any other Durable Object round trips, the audit writer's calls and batch. */
function withinGoal(label, record) {
  const goal = GOALS[label] ?? WRITE;
  const counts = countsOf(record);
  return (
    counts.d1 <= goal.d1 &&
    counts.others <= (goal.others ?? 0) &&
    counts.auditChain <= goal.auditChain &&
    counts.auditWriter <= goal.auditWriter
  );
}

export function roundTripsReport({ rows }) {
  const doCell = (record) =>
    Object.entries(record.durableObjects)
      .map(([binding, calls]) => `${binding} ${calls.length}`)
      .join(", ") || "-";
  const lines = [
    "D1 round trips and Durable Object calls per operation (issue 13), counted at the bindings (bench/counting-entry.mjs);",
    "one request at a time on a warmed isolate; a batch is one round trip; only calls started before the response count.",
    "'D1' is the worker's own calls; 'audit writer' the D1 calls of the tenant's AuditChain object (the audited write batch)",
    table(
      ["route", "D1 round trips", "statements", "DO calls", "audit writer D1", "goal", "within goal"],
      rows.map(({ label, record }) => [
        label,
        record.d1.length,
        record.statements,
        doCell(record),
        `${record.auditWriter.length} (${record.auditWriterStatements} st)`,
        (GOALS[label] ?? WRITE).label,
        withinGoal(label, record) ? "yes" : "NO",
      ]),
    ),
    "D1 calls by route:",
    ...rows.map(({ label, record }) => `  ${label}: ${record.d1.join(", ") || "-"}`),
  ];
  const summary = {
    d1_round_trips: Object.fromEntries(rows.map(({ label, record }) => [label, record.d1.length])),
    do_calls: Object.fromEntries(
      rows.map(({ label, record }) => [
        label,
        Object.fromEntries(Object.entries(record.durableObjects).map(([b, calls]) => [b, calls.length])),
      ]),
    ),
    audit_writer_d1_round_trips: Object.fromEntries(
      rows
        .filter(({ record }) => record.auditWriter.length)
        .map(({ label, record }) => [label, record.auditWriter.length]),
    ),
    round_trips_within_goal: Object.fromEntries(
      rows.map(({ label, record }) => [label, withinGoal(label, record)]),
    ),
  };
  return { lines, summary };
}
