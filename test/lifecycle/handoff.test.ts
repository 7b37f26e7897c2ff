/**
 * Delivery of an automatically rotated key to its tenant: a JWE to the tenant's public key inside a Standard
 * Webhooks-signed POST, against a stand-in receiver (MSW inside workerd) that decrypts it with the private key
 * only the test holds.
 */
import { env } from "cloudflare:workers";
import { calculateJwkThumbprint, compactDecrypt, decodeProtectedHeader } from "jose";
import { HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { commitWithAudit } from "../../src/audit/audit-log";
import { openValues } from "../../src/credentials/sealed-fields";
import { fromBase64, utf8 } from "../../src/crypto/encoding";
import { database } from "../../src/db/client";
import {
  deliverHandoff,
  endHandoffStatements,
  HandoffDeliveryError,
  handoffMessageId,
  handoffRecordId,
  pendingPickup,
} from "../../src/lifecycle/key-handoff";
import { unseal } from "../../src/vault/keyring";
import { call, createTenant, verify } from "../helpers/api";
import { dumpDatabase } from "../helpers/db";
import { network } from "../setup/network";
import { deliveryKeyPair, HOOK_URL, handOff, handoffRow, registerEndpoint } from "./handoff-fixtures";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

interface Received {
  headers: Record<string, string>;
  body: string;
}

/** A receiver at HOOK_URL that records what it got and answers `status`. */
function receiver(status = 204, url = HOOK_URL) {
  const received: Received[] = [];
  network.use(
    http.post(url, async ({ request }) => {
      const headers: Record<string, string> = {};
      request.headers.forEach((value, name) => {
        headers[name] = value;
      });
      received.push({ headers, body: await request.text() });
      return new HttpResponse(null, { status });
    }),
  );
  return received;
}

/**
 * The receiver's side of Standard Webhooks (standardwebhooks.com spec, "Verifying webhooks"), written from the
 * spec rather than with the sender's code: HMAC-SHA256 of `id.timestamp.body` under the base64 secret.
 */
async function verifyStandardWebhook(secret: string, message: Received): Promise<boolean> {
  const key = await crypto.subtle.importKey(
    "raw",
    fromBase64(secret.slice("whsec_".length)),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["verify"],
  );
  const signed = `${message.headers["webhook-id"]}.${message.headers["webhook-timestamp"]}.${message.body}`;
  const signatures = (message.headers["webhook-signature"] ?? "").split(" ");
  for (const entry of signatures) {
    const [version, signature] = entry.split(",");
    if (version !== "v1" || !signature) continue;
    if (await crypto.subtle.verify("HMAC", key, fromBase64(signature), utf8(signed))) return true;
  }
  return false;
}

describe("delivery of a rotated key by JWE (threat model case 30)", () => {
  it("posts the key as a JWE only the tenant's private key opens, signed per Standard Webhooks, then keeps nothing that yields it", async () => {
    const tenant = await createTenant("handoff webhook");
    const { publicJwk, privateKey } = await deliveryKeyPair();
    const endpoint = await registerEndpoint(tenant, publicJwk);
    const received = receiver(204);
    const handoff = await handOff(tenant);
    expect(handoff.method).toBe("webhook");
    // Stored until delivery, and only as a JWE: the plaintext is nowhere in the database.
    const stored = await handoffRow(handoff.keyId);
    expect(stored?.method).toBe("webhook");
    expect(await dumpDatabase()).not.toContain(handoff.plaintext);

    const sentAt = Date.UTC(2030, 0, 1, 12);
    expect(await deliverHandoff(env, handoff.keyId, sentAt)).toBe("delivered");

    expect(received).toHaveLength(1);
    const message = received[0] as Received;
    expect(message.headers["content-type"]).toBe("application/json");
    expect(message.headers["webhook-id"]).toBe(handoffMessageId(handoff.keyId));
    expect(message.headers["webhook-timestamp"]).toBe(String(sentAt / 1000));
    expect(await verifyStandardWebhook(endpoint.signing_secret, message)).toBe(true);
    // A body altered on the way no longer verifies.
    expect(
      await verifyStandardWebhook(endpoint.signing_secret, { ...message, body: `${message.body} ` }),
    ).toBe(false);

    const body = JSON.parse(message.body) as { type: string; key_id: string; jwe: string };
    expect(body.type).toBe("key.rotated");
    expect(body.key_id).toBe(handoff.keyId);
    expect(body.jwe.split(".")).toHaveLength(5);
    expect(body.jwe).not.toContain(handoff.plaintext);
    expect(decodeProtectedHeader(body.jwe)).toMatchObject({
      alg: "ECDH-ES",
      enc: "A256GCM",
      kid: await calculateJwkThumbprint(publicJwk, "sha256"),
    });
    const { plaintext } = await compactDecrypt(body.jwe, privateKey);
    const payload = JSON.parse(new TextDecoder().decode(plaintext)) as Record<string, string>;
    expect(payload).toEqual({
      key_id: handoff.keyId,
      key: handoff.plaintext,
      rotated_from_id: "key_predecessor",
      rotated_at: new Date(handoff.now).toISOString(),
    });
    // What the tenant decrypted is the working key.
    expect((await verify(tenant, payload.key as string)).valid).toBe(true);

    // Delivered: the handoff is gone, and no row of any table holds the key or its JWE.
    expect(await handoffRow(handoff.keyId)).toBeNull();
    expect(await pendingPickup(database(env.DB), handoff.keyId)).toBe(false);
    const dump = await dumpDatabase();
    expect(dump).not.toContain(handoff.plaintext);
    expect(dump).not.toContain(stored?.payload);
    expect(dump).not.toContain(endpoint.signing_secret);
    const audit = await env.DB.prepare(
      "SELECT action, detail FROM audit_log WHERE tenant_id = ? AND target_id = ? ORDER BY seq",
    )
      .bind(tenant.id, handoff.keyId)
      .all<{ action: string; detail: string }>();
    expect(audit.results.map((row) => row.action)).toContain("key.delivered");
  });

  it("encrypts to X25519 and RSA-OAEP-256 keys as well", async () => {
    for (const pair of [
      await deliveryKeyPair("ECDH-ES", { crv: "X25519" }),
      await deliveryKeyPair("RSA-OAEP-256", { modulusLength: 2048 }),
    ]) {
      const tenant = await createTenant(`handoff ${pair.publicJwk.kty}`);
      await registerEndpoint(tenant, pair.publicJwk);
      const handoff = await handOff(tenant);
      const stored = await handoffRow(handoff.keyId);
      const { plaintext, protectedHeader } = await compactDecrypt(stored?.payload ?? "", pair.privateKey);
      expect(protectedHeader.alg).toBe(pair.publicJwk.kty === "RSA" ? "RSA-OAEP-256" : "ECDH-ES");
      expect(JSON.parse(new TextDecoder().decode(plaintext)).key).toBe(handoff.plaintext);
    }
  });

  it("keeps the JWE and counts the attempt when the endpoint refuses, and throws with the status but not the key", async () => {
    const tenant = await createTenant("handoff refused");
    const { publicJwk } = await deliveryKeyPair();
    await registerEndpoint(tenant, publicJwk);
    const received = receiver(500);
    const handoff = await handOff(tenant);
    const before = await handoffRow(handoff.keyId);

    const failure = await deliverHandoff(env, handoff.keyId, Date.now()).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(HandoffDeliveryError);
    expect((failure as HandoffDeliveryError).message).toContain("HTTP 500");
    expect((failure as HandoffDeliveryError).status).toBe(500);
    expect((failure as HandoffDeliveryError).permanent).toBe(false);
    expect((failure as Error).message).not.toContain(before?.payload);
    expect((failure as Error).message).not.toContain(handoff.plaintext);
    expect(received).toHaveLength(1);

    const after = await handoffRow(handoff.keyId);
    expect(after?.payload).toBe(before?.payload);
    expect(after?.attempts).toBe(1);
    expect(await pendingPickup(database(env.DB), handoff.keyId)).toBe(true);

    // The step's retry, once the receiver is fixed, delivers the same message (same webhook-id).
    network.resetHandlers();
    const retried = receiver(200);
    expect(await deliverHandoff(env, handoff.keyId, Date.now())).toBe("delivered");
    expect(retried[0]?.headers["webhook-id"]).toBe(received[0]?.headers["webhook-id"]);
    expect(await handoffRow(handoff.keyId)).toBeNull();
  });

  it("does not follow a redirect from the endpoint (threat model case 31)", async () => {
    const tenant = await createTenant("handoff redirect");
    const { publicJwk } = await deliveryKeyPair();
    await registerEndpoint(tenant, publicJwk);
    const followed = receiver(204, "https://elsewhere.example/steal");
    network.use(
      http.post(
        HOOK_URL,
        () =>
          new HttpResponse(null, { status: 307, headers: { location: "https://elsewhere.example/steal" } }),
      ),
    );
    const handoff = await handOff(tenant);
    await expect(deliverHandoff(env, handoff.keyId, Date.now())).rejects.toThrow("HTTP 307");
    expect(followed).toHaveLength(0);
    expect((await handoffRow(handoff.keyId))?.attempts).toBe(1);
  });

  it("fails permanently when the tenant removed its endpoint after the key was encrypted", async () => {
    const tenant = await createTenant("handoff endpoint removed");
    const { publicJwk } = await deliveryKeyPair();
    await registerEndpoint(tenant, publicJwk);
    const handoff = await handOff(tenant);
    const removed = await call("DELETE", "/api/v1/rotation/delivery-endpoint", { key: tenant.adminKey });
    expect(removed.status).toBe(204);
    const failure = await deliverHandoff(env, handoff.keyId, Date.now()).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(HandoffDeliveryError);
    expect((failure as HandoffDeliveryError).permanent).toBe(true);
    expect((await handoffRow(handoff.keyId))?.attempts).toBe(1);
  });

  it("is idempotent: a delivered or never-made handoff is gone, a sealed one is not a webhook", async () => {
    const tenant = await createTenant("handoff idempotent");
    const pickup = await handOff(tenant);
    expect(pickup.method).toBe("pickup");
    expect(await deliverHandoff(env, pickup.keyId, Date.now())).toBe("not_webhook");
    expect(await deliverHandoff(env, "key_neverhandedoff0000000", Date.now())).toBe("gone");

    const { publicJwk } = await deliveryKeyPair();
    await registerEndpoint(tenant, publicJwk);
    const received = receiver(204);
    const webhook = await handOff(tenant);
    expect(await deliverHandoff(env, webhook.keyId, Date.now())).toBe("delivered");
    expect(await deliverHandoff(env, webhook.keyId, Date.now())).toBe("gone");
    expect(received).toHaveLength(1);
  });
});

describe("a rotated key kept for pickup (threat model case 30)", () => {
  it("is sealed under the tenant's data key, bound to its own key id, never stored as itself", async () => {
    const tenant = await createTenant("handoff sealed");
    const first = await handOff(tenant);
    const second = await handOff(tenant);
    expect(first.method).toBe("pickup");
    expect(await dumpDatabase()).not.toContain(first.plaintext);
    const db = database(env.DB);
    const keys = await unseal(env, db);
    const blob = (await handoffRow(first.keyId))?.payload ?? "";
    const opened = await openValues(
      keys,
      db,
      { tenantId: tenant.id, recordId: handoffRecordId(first.keyId) },
      {
        key: blob,
      },
    );
    expect(opened.key).toBe(first.plaintext);
    // Copied onto another key's handoff, the blob fails authentication instead of opening as that key.
    await expect(
      openValues(keys, db, { tenantId: tenant.id, recordId: handoffRecordId(second.keyId) }, { key: blob }),
    ).rejects.toThrow();
  });

  it("is destroyed by the retire step's DELETE, after which nothing yields it", async () => {
    const tenant = await createTenant("handoff retired");
    const handoff = await handOff(tenant);
    const db = database(env.DB);
    expect(await pendingPickup(db, handoff.keyId)).toBe(true);
    const blob = (await handoffRow(handoff.keyId))?.payload ?? "";
    await commitWithAudit(
      env,
      { tenantId: tenant.id, actorType: "system", actorId: "rotation", requestId: "retire-test" },
      endHandoffStatements(db, handoff.keyId),
      [],
    );
    expect(await pendingPickup(db, handoff.keyId)).toBe(false);
    const dump = await dumpDatabase();
    expect(dump).not.toContain(blob);
    expect(dump).not.toContain(handoff.plaintext);
  });
});
