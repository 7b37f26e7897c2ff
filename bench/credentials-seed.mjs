// Sealed credentials seeded straight into D1 for the scale comparison (bench/million.mjs): copies of the one
// credential the API stored (service stripe, one secret field), each with its own plaintext sealed in Node under
// the instance's tenant DEK by bench/envelope.mjs, as the keyring stage does. The copied format is checked both
// ways before anything is measured: Node unwraps the API's DEK and opens the API's field (which must equal what
// the API reveals), and the API reveals fields Node sealed (first, middle and last seeded). A drift fails loudly.
import { deriveMasterKek, importDek, maskValue, openField, sealField, unwrapDek } from "./envelope.mjs";
import { randomBase62 } from "./keys.mjs";
import { log } from "./system.mjs";

/** Credentials per IPC call (their version rows go in a call of their own). */
const SEED_CHUNK = 10_000;
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/** A real-shaped Stripe test key, as the catalogue validates them. */
const stripeTestKey = () =>
  `sk_test_${Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => BASE62[b % 62]).join("")}`;
/** The record id a credential version's fields are sealed under (src/credentials: `<credential>#<version>`). */
const recordId = (credentialId, version) => `${credentialId}#${version}`;

async function reveal(instance, credentialId) {
  const response = await fetch(new URL(`/api/v1/credentials/${credentialId}/reveal`, instance.url), {
    method: "POST",
    headers: { authorization: `Bearer ${instance.adminKey}`, "content-type": "application/json" },
    body: "{}",
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`reveal ${credentialId} -> ${response.status} ${JSON.stringify(json)}`);
  return json;
}

/**
 * Seeds credentials until the instance's tenant holds `total` (the API's one included), one version each, sealed
 * under the tenant's DEK. Returns the count, the seconds it took and a few seeded ids with their plaintexts.
 */
export async function seedSealedCredentials(instance, masterKey, total) {
  const started = performance.now();
  const { host } = instance;
  const query = (sql) => host.call({ cmd: "query", args: { sql } });
  const insert = (table, rows) => host.call({ cmd: "insert", args: { table, rows } });
  const [credential] = await query(`SELECT * FROM credentials WHERE id = '${instance.credential.id}'`);
  const tenantId = credential.tenant_id;
  const [version1] = await query(
    `SELECT * FROM credential_versions WHERE credential_id = '${credential.id}' AND version = 1`,
  );
  const [dataKey] = await query(
    `SELECT * FROM data_keys WHERE tenant_id = '${tenantId}' AND status = 'active' ORDER BY version DESC LIMIT 1`,
  );
  if (dataKey.kek_provider !== "master")
    throw new Error(`credentials seed: the tenant DEK is under ${dataKey.kek_provider}, not master`);

  // One way: Node unwraps the API's DEK and opens the field the worker sealed; it must be what the API reveals.
  const kek = await deriveMasterKek(masterKey, dataKey.kek_version);
  const dek = await importDek(
    await unwrapDek(kek, dataKey.wrapped_key, tenantId, dataKey.version, dataKey.kek_version),
  );
  const revealed = await reveal(instance, credential.id);
  const opened = await openField(
    async () => dek,
    { tenantId, recordId: recordId(credential.id, 1), field: "secret_key" },
    JSON.parse(version1.sealed_fields).secret_key,
  );
  if (opened !== revealed.fields.secret_key)
    throw new Error("credentials seed: bench/envelope.mjs does not open the field the worker sealed");

  const [{ n: stored }] = await query(
    `SELECT count(*) AS n FROM credentials WHERE tenant_id = '${tenantId}'`,
  );
  const count = total - stored;
  const now = Date.now();
  const sample = [];
  for (let start = 0; start < count; start += SEED_CHUNK) {
    const size = Math.min(SEED_CHUNK, count - start);
    const made = await Promise.all(
      Array.from({ length: size }, async (_, i) => {
        const id = `cred_${randomBase62(22)}`;
        const value = stripeTestKey();
        const sealed = await sealField(
          dek,
          dataKey.version,
          { tenantId, recordId: recordId(id, 1), field: "secret_key" },
          value,
        );
        const at = now - (count - start - i) * 1_000;
        return {
          id,
          value,
          credential: { ...credential, id, name: `bench-${start + i}`, created_at: at, updated_at: at },
          version: {
            ...version1,
            credential_id: id,
            sealed_fields: JSON.stringify({ secret_key: sealed }),
            dek_version: dataKey.version,
            display_fields: JSON.stringify({ secret_key: maskValue(value) }),
            created_at: at,
          },
        };
      }),
    );
    await insert(
      "credentials",
      made.map((m) => m.credential),
    );
    await insert(
      "credential_versions",
      made.map((m) => m.version),
    );
    for (const index of [0, size >> 1, size - 1])
      sample.push({ id: made[index].id, value: made[index].value });
  }
  await query(
    `UPDATE data_keys SET encryption_count = encryption_count + ${count} WHERE tenant_id = '${tenantId}' AND version = ${dataKey.version}`,
  );

  // The other way: the API reveals fields Node sealed.
  for (const { id, value } of [sample[0], sample[sample.length >> 1], sample.at(-1)].filter(Boolean)) {
    const body = await reveal(instance, id);
    if (body.fields.secret_key !== value)
      throw new Error(`credentials seed: ${id} did not reveal its seeded plaintext`);
  }
  const [{ n: credentials }] = await query(
    `SELECT count(*) AS n FROM credentials WHERE tenant_id = '${tenantId}'`,
  );
  const [{ n: versions }] = await query(
    `SELECT count(*) AS n FROM credential_versions WHERE tenant_id = '${tenantId}'`,
  );
  if (credentials !== total || versions !== total)
    throw new Error(`credentials seed: ${credentials} credentials and ${versions} versions, not ${total}`);
  const seconds = (performance.now() - started) / 1000;
  log(
    `${instance.name}: ${credentials} credentials stored (sealed in Node and checked both ways in ${seconds.toFixed(1)} s)`,
  );
  return { credentials, seconds, sample };
}
