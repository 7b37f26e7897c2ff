/**
 * KEK rotation while verify, store and reveal traffic runs: zero failed requests. During a rollout both
 * configurations serve at once, so every round sends the same traffic through an isolate on the old
 * configuration (KEK_VERSION=1, MASTER_KEY_2 already added: step 1 of the procedure) and one on the new
 * (KEK_VERSION=2), each cold (no DEK cached: every DEK is unwrapped from its wrapping of that moment), between
 * the re-wrap's chunks. The old isolate keeps creating tenants under master:1 meanwhile; the re-wrap's next
 * pass moves those too.
 */
import { env } from "cloudflare:workers";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { database } from "../../src/db/client";
import type { Bindings } from "../../src/env";
import { type RewrapChunk, type RewrapCursor, rewrapChunk } from "../../src/vault/kek-rewrap";
import { forgetKeys, type Unsealed, unseal } from "../../src/vault/keyring";
import { stripeKey } from "../credentials/samples";
import type { TestTenant } from "../helpers/api";
import {
  createKeyWith,
  createSystemKeysWith,
  createTenantWith,
  envWith,
  expectAllReveal,
  keksInUse,
  keyMaterial,
  MASTER_1_ONLY,
  revealWith,
  type Sent,
  type StoredCredential,
  send,
  storeWith,
  verifyWith,
} from "./kek-fixtures";

const OLD = envWith({ KEK_VERSION: "1" });
const NEW = env;
const MASTER_2_ONLY = envWith({ MASTER_KEY: undefined });
const CHUNK = 2;

interface Customer {
  tenant: TestTenant;
  apiKey: string;
  credentials: StoredCredential[];
}

const customers: Customer[] = [];
/** An isolate's keyring opened before any isolate on the new configuration recorded master:2. */
let openedBeforeSwitch: Unsealed;

async function newCustomer(workerEnv: Bindings, name: string): Promise<Customer> {
  const tenant = await createTenantWith(workerEnv, name);
  const apiKey = await createKeyWith(workerEnv, tenant);
  return { tenant, apiKey, credentials: [await storeWith(workerEnv, tenant)] };
}

/** The re-wrap to its end, chunk by chunk as the Workflow's steps make them; `between` runs after each chunk. */
async function rewrapAll(between: (chunks: number) => Promise<void> = async () => {}): Promise<number> {
  let chunks = 0;
  for (let pass = 0; ; pass++) {
    expect(pass, "the re-wrap does not converge").toBeLessThan(4);
    let found = 0;
    let cursor: RewrapCursor | null = null;
    do {
      const chunk: RewrapChunk = await rewrapChunk(NEW, { cursor, size: CHUNK });
      found += chunk.found;
      cursor = chunk.next;
      await between(++chunks);
    } while (cursor);
    if (found === 0) return chunks;
  }
}

beforeAll(async () => {
  openedBeforeSwitch = await unseal(OLD, database(env.DB));
  await createSystemKeysWith(MASTER_1_ONLY);
  for (let i = 0; i < 2; i++) customers.push(await newCustomer(MASTER_1_ONLY, `customer ${i}`));
});

beforeEach(() => forgetKeys());

describe("KEK rotation under traffic", () => {
  it("answers every verify, store and reveal from both configurations with 2xx while the re-wrap runs chunk by chunk", async () => {
    const responses: { label: string; status: number }[] = [];
    const record = (label: string, sent: Sent) => {
      responses.push({ label, status: sent.status });
      return sent;
    };
    let round = 0;
    const traffic = async () => {
      round++;
      for (const [name, workerEnv] of [
        ["old", OLD],
        ["new", NEW],
      ] as const) {
        forgetKeys();
        for (const [i, customer] of customers.entries()) {
          const label = `round ${round} ${name} customer ${i}`;
          const verified = record(
            `${label} verify`,
            await verifyWith(workerEnv, customer.tenant, customer.apiKey),
          );
          expect(verified.body, label).toMatchObject({ valid: true });
          const fields = { secret_key: stripeKey() };
          const stored = record(
            `${label} store`,
            await send(workerEnv, "POST", "/api/v1/credentials", {
              key: customer.tenant.adminKey,
              body: { service: "stripe", environment: "development", fields },
            }),
          );
          if (stored.status === 201)
            customer.credentials.push({ tenant: customer.tenant, id: stored.body.id as string, fields });
          // The credential stored just now: sealed under the tenant's DEK as this round found it wrapped.
          const credential = customer.credentials.at(-1);
          if (credential) {
            const revealed = record(`${label} reveal`, await revealWith(workerEnv, credential));
            if (revealed.status === 200) expect(revealed.body.fields, label).toEqual(credential.fields);
          }
        }
      }
    };

    // A round of traffic before the re-wrap and after each of its chunks. After the second chunk an isolate
    // still on the old configuration signs up a tenant: its DEK goes under master:1, behind the pass.
    await traffic();
    const chunks = await rewrapAll(async (chunk) => {
      await traffic();
      if (chunk === 2) customers.push(await newCustomer(OLD, "late customer"));
    });
    // 2 DEKs | the system keys (pass end) | the late DEK (pass end) | nothing.
    expect(chunks).toBe(4);
    expect(responses.filter((response) => response.status < 200 || response.status > 299)).toEqual([]);
    // 5 rounds x 2 configurations x 3 requests, for 2 customers, and the late one in the last 2 rounds.
    expect(responses.length).toBe(5 * 2 * 3 * 2 + 2 * 2 * 3);
    // The DEKs, and the audit-chain and session-jwt system keys. No key-cache system key: with a master secret,
    // verify's Cache API entry key is derived from it and never stored (src/keys/key-cache-mac-key.ts).
    expect(await keksInUse()).toEqual({ "master:2": customers.length + 2 });
    // Nothing depends on MASTER_KEY any more: every credential stored before, during and after the switch.
    forgetKeys();
    await expectAllReveal(
      MASTER_2_ONLY,
      customers.flatMap((customer) => customer.credentials),
    );
  });

  it("lets an isolate whose keyring opened before master:2 was recorded read the keys the re-wrap moved", async () => {
    // That keyring verified master:1 only; it verifies master:2 against its key-check value on first use.
    expect(openedBeforeSwitch.keks.target).toEqual({ provider: "master", version: 1 });
    await rewrapAll();
    expect(await keksInUse()).toEqual({ "master:2": customers.length + 2 });
    expect(await keyMaterial(openedBeforeSwitch)).toEqual(
      await keyMaterial(await unseal(NEW, database(env.DB))),
    );
  });
});
