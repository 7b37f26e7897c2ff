import { z } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { CompactEncrypt, calculateJwkThumbprint, importJWK, type JWK } from "jose";
import type { AuditEvent, commitWithAudit } from "../audit/audit-log";
import { openValues, sealValues } from "../credentials/sealed-fields";
import { utf8 } from "../crypto/encoding";
import { publicJwkRule } from "../crypto/public-jwk";
import type { Database } from "../db/client";
import { keyDeliveryEndpoints } from "../db/schema";
import type { Bindings } from "../env";
import { assertDeliverableUrl } from "../monitoring/outbound-url";
import { newSigningSecret } from "../monitoring/standard-webhooks";
import { isoTime } from "../openapi/shared";
import type { KeyringEnv } from "../vault/kek-config";
import { unseal } from "../vault/keyring";

type Statement = Parameters<typeof commitWithAudit>[2][number];
export type DeliveryEndpointRow = typeof keyDeliveryEndpoints.$inferSelect;
type SealEnv = KeyringEnv;

/**
 * The key-management algorithm each accepted public key is used with (RFC 7518 §4.6, §4.3). ECDH-ES is direct
 * key agreement with an ephemeral key per message; RSA-OAEP-256 is OAEP with SHA-256 (not RSA1_5, which is
 * open to padding-oracle attacks, nor RSA-OAEP with SHA-1).
 */
export const DELIVERY_KEY_ALGS = {
  "EC:P-256": "ECDH-ES",
  "OKP:X25519": "ECDH-ES",
  RSA: "RSA-OAEP-256",
} as const;
export type DeliveryKeyAlg = (typeof DELIVERY_KEY_ALGS)[keyof typeof DELIVERY_KEY_ALGS];

/** The content encryption of every delivered key (RFC 7518 §5.3): AES-256-GCM. */
export const DELIVERY_CONTENT_ENCRYPTION = "A256GCM";

/** NIST SP 800-57 Part 1 Rev. 5 Table 2: RSA below 2048 bits is no longer acceptable for key transport. */
export const MIN_RSA_BITS = 2048;

const deliveryJwk = publicJwkRule({
  field: "public_jwk",
  algs: ["ECDH-ES", "RSA-OAEP-256"],
  ecAlg: "ECDH-ES",
  curves: ["P-256"],
  minRsaBits: MIN_RSA_BITS,
  coordinateMax: 64,
  privateMemberMessage: "is a private key member: register the public key only",
});

export const PublicJwkSchema = deliveryJwk.schema.openapi("DeliveryPublicJwk", {
  description:
    "The public key rotated keys are encrypted to: EC P-256 or OKP X25519 (ECDH-ES), or RSA of at least " +
    "2048 bits (RSA-OAEP-256). Private members (`d`, `p`, `q`, ...) are refused.",
  example: {
    kty: "EC",
    crv: "P-256",
    x: "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    y: "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
  },
});

export const DeliveryEndpointBodySchema = z
  .strictObject({
    url: z.string().max(2048).describe("https on port 443 or 8443, a public host."),
    public_jwk: PublicJwkSchema,
  })
  .openapi("DeliveryEndpointInput");

const PublicJwkViewSchema = z.record(z.string(), z.string());

export const DeliveryEndpointSchema = z
  .object({
    url: z.string(),
    public_jwk: PublicJwkViewSchema.describe(
      "The stored public members and the algorithm they are used with.",
    ),
    key_fingerprint: z
      .string()
      .describe("RFC 7638 SHA-256 thumbprint: the `kid` of every JWE sent to this key."),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("DeliveryEndpoint");

export const RegisteredDeliveryEndpointSchema = DeliveryEndpointSchema.extend({
  signing_secret: z
    .string()
    .describe("Standard Webhooks signing secret (`whsec_...`). Shown once: store it now."),
}).openapi("RegisteredDeliveryEndpoint");

export type PublicJwkInput = z.infer<typeof PublicJwkSchema>;

/**
 * Keeps only the members that define the public key (`publicKeyMembers`), and the algorithm it will be used
 * with. Keywarden names the key by its thumbprint.
 */
function canonicalPublicJwk(jwk: PublicJwkInput): { jwk: Record<string, string>; alg: DeliveryKeyAlg } {
  const members = deliveryJwk.publicMembers(jwk);
  const alg =
    members.kty === "RSA"
      ? DELIVERY_KEY_ALGS.RSA
      : members.kty === "EC"
        ? DELIVERY_KEY_ALGS["EC:P-256"]
        : DELIVERY_KEY_ALGS["OKP:X25519"];
  return { jwk: { ...members, alg }, alg };
}

/** The RFC 7638 thumbprint of a stored key: Keywarden's name for it, and the `kid` of its JWEs. */
export function keyFingerprint(publicJwk: Readonly<Record<string, string>>): Promise<string> {
  return calculateJwkThumbprint(publicJwk as JWK, "sha256");
}

function storedAlg(publicJwk: Readonly<Record<string, string>>): DeliveryKeyAlg {
  return publicJwk.kty === "RSA" ? DELIVERY_KEY_ALGS.RSA : DELIVERY_KEY_ALGS["EC:P-256"];
}

/**
 * Checks that the key is usable by importing it (WebCrypto refuses an EC point off the curve, a malformed
 * X25519 value or a broken RSA key), and returns its canonical form and thumbprint.
 */
export async function acceptPublicJwk(input: PublicJwkInput) {
  const { jwk, alg } = canonicalPublicJwk(input);
  try {
    await importJWK(jwk as JWK, alg);
  } catch {
    throw deliveryJwk.invalid("kty", "could not be imported: check its members");
  }
  return { jwk, alg, fingerprint: await keyFingerprint(jwk) };
}

export function deliveryEndpointRecordId(tenantId: string): string {
  return `delivery-endpoint:${tenantId}`;
}

export async function findDeliveryEndpoint(
  db: Database,
  tenantId: string,
): Promise<DeliveryEndpointRow | undefined> {
  return db.select().from(keyDeliveryEndpoints).where(eq(keyDeliveryEndpoints.tenantId, tenantId)).get();
}

export async function deliveryEndpointView(row: DeliveryEndpointRow) {
  return {
    url: row.url,
    public_jwk: row.publicJwk,
    key_fingerprint: await keyFingerprint(row.publicJwk),
    created_at: isoTime(row.createdAt) as string,
    updated_at: isoTime(row.updatedAt) as string,
  };
}

/**
 * Registers or replaces the tenant's endpoint. Every registration gets a fresh signing secret, so a
 * replaced endpoint's old secret signs nothing any more. The secret is sealed under the tenant DEK with the
 * record id in the AAD, and returned to the caller this once.
 */
export async function registerDeliveryEndpoint(
  env: SealEnv & Pick<Bindings, "ALLOW_LOOPBACK_WEBHOOKS">,
  db: Database,
  tenantId: string,
  body: z.infer<typeof DeliveryEndpointBodySchema>,
  now: number,
) {
  const url = assertDeliverableUrl(body.url, env.ALLOW_LOOPBACK_WEBHOOKS === "true", "url");
  const key = await acceptPublicJwk(body.public_jwk);
  const signingSecret = newSigningSecret();
  const { sealed, dekVersion, countEncryptions } = await sealValues(
    await unseal(env, db),
    db,
    { tenantId, recordId: deliveryEndpointRecordId(tenantId) },
    { signing_secret: signingSecret },
  );
  const existing = await findDeliveryEndpoint(db, tenantId);
  const row: DeliveryEndpointRow = {
    tenantId,
    url: url.href,
    publicJwk: key.jwk,
    sealedSigningSecret: sealed.signing_secret as string,
    dekVersion,
    createdAt: existing?.createdAt ?? now,
    updatedAt: now,
  };
  const statements: Statement[] = [
    db
      .insert(keyDeliveryEndpoints)
      .values(row)
      .onConflictDoUpdate({
        target: keyDeliveryEndpoints.tenantId,
        set: {
          url: row.url,
          publicJwk: row.publicJwk,
          sealedSigningSecret: row.sealedSigningSecret,
          dekVersion: row.dekVersion,
          updatedAt: now,
        },
      }),
    countEncryptions,
  ];
  const event: AuditEvent = {
    action: "delivery_endpoint.set",
    targetType: "delivery_endpoint",
    targetId: tenantId,
    // The host and the key's thumbprint identify the change; the path may carry a token of the tenant's.
    detail: {
      host: url.host,
      key_fingerprint: key.fingerprint,
      alg: key.alg,
      replaced: existing !== undefined,
    },
  };
  return { statements, event, row, signingSecret };
}

export function removeDeliveryEndpointStatements(db: Database, tenantId: string): Statement[] {
  return [db.delete(keyDeliveryEndpoints).where(eq(keyDeliveryEndpoints.tenantId, tenantId))];
}

/** The endpoint's signing secret in plaintext, for one delivery. */
export async function openSigningSecret(
  env: SealEnv,
  db: Database,
  row: DeliveryEndpointRow,
): Promise<string> {
  const { signing_secret } = await openValues(
    await unseal(env, db),
    db,
    { tenantId: row.tenantId, recordId: deliveryEndpointRecordId(row.tenantId) },
    { signing_secret: row.sealedSigningSecret },
  );
  return signing_secret as string;
}

/**
 * Encrypts `payload` to the endpoint's public key as a JWE in compact serialisation (RFC 7516 §7.1). The
 * protected header names the key by its thumbprint (`kid`), so a tenant that rolls its key pair knows which
 * private key opens a message.
 */
export async function encryptToEndpoint(row: Pick<DeliveryEndpointRow, "publicJwk">, payload: string) {
  const alg = storedAlg(row.publicJwk);
  const key = await importJWK(row.publicJwk as JWK, alg);
  return new CompactEncrypt(utf8(payload))
    .setProtectedHeader({
      alg,
      enc: DELIVERY_CONTENT_ENCRYPTION,
      kid: await keyFingerprint(row.publicJwk),
      cty: "application/json",
    })
    .encrypt(key);
}
