import { z } from "@hono/zod-openapi";
import {
  base64url,
  CompactEncrypt,
  type CompactJWEHeaderParameters,
  compactDecrypt,
  decodeProtectedHeader,
  importJWK,
  type JWK,
} from "jose";
import { hasObviousRun } from "../catalog/placeholders";
import { utf8 } from "../crypto/encoding";
import { Base64UrlSchema, publicJwkRule } from "../crypto/public-jwk";
import { ApiError } from "../errors";
import { keyFingerprint } from "../lifecycle/delivery-endpoint";

/**
 * The JWE algorithms of an export (RFC 7516, RFC 7518). The content is always AES-256-GCM (§5.3). Its key
 * is wrapped either with a key derived from a passphrase (PBES2, §4.8: PBKDF2 with HMAC-SHA-512, then
 * AES-256 key wrap) or to a public key the tenant supplies (ECDH-ES+A256KW, §4.6; RSA-OAEP-256, §4.3).
 */
export const CONTENT_ENCRYPTION = "A256GCM";
export const PASSPHRASE_ALG = "PBES2-HS512+A256KW";
export const PUBLIC_KEY_ALGS = ["ECDH-ES+A256KW", "RSA-OAEP-256"] as const;
export type PublicKeyAlg = (typeof PUBLIC_KEY_ALGS)[number];

/**
 * PBKDF2 iterations (the JWE `p2c`). Deployed Workers refuse PBKDF2 above 100,000 iterations (SECURITY.md,
 * "Platform"), so this is both the most Workers allow and the most an import will ever run: a JWE asking for
 * more is refused before any derivation, so a crafted `p2c` cannot buy CPU time either. 100,000 is below
 * OWASP's 210,000 for PBKDF2-HMAC-SHA-512 (Password Storage CS), which is why the passphrase has a length
 * floor: the passphrase, not the iteration count, carries the strength (NIST SP 800-132 §5.2).
 */
export const PBES2_ITERATIONS = 100_000;

/** The passphrase floor: 16 characters, not a run like `aaaa…` or `1234…`. At most 1,024 characters. */
export const MIN_PASSPHRASE_LENGTH = 16;
export const PassphraseSchema = z
  .string()
  .min(MIN_PASSPHRASE_LENGTH, `must be at least ${MIN_PASSPHRASE_LENGTH} characters`)
  .max(1024)
  .refine((value) => !hasObviousRun(value), "must not be an obvious run of characters")
  .describe(
    `At least ${MIN_PASSPHRASE_LENGTH} characters. The export is encrypted with PBES2-HS512+A256KW ` +
      `(p2c ${PBES2_ITERATIONS}) and A256GCM; never stored or logged.`,
  );

/**
 * An export kept as a file outlives the request, possibly by years: the public keys it is encrypted to must
 * stay strong past 2030, i.e. 128-bit security (NIST SP 800-57 Part 1 Rev. 5, Table 2 and §5.6.3): P-256,
 * P-384 or X25519, or RSA of at least 3,072 bits. (Rotated-key delivery, whose JWEs live for hours, accepts
 * RSA-2048.)
 */
export const MIN_EXPORT_RSA_BITS = 3072;

const exportJwk = publicJwkRule({
  field: "public_key",
  algs: PUBLIC_KEY_ALGS,
  ecAlg: "ECDH-ES+A256KW",
  curves: ["P-256", "P-384"],
  minRsaBits: MIN_EXPORT_RSA_BITS,
  coordinateMax: 128,
  privateMemberMessage: "is a private key member: send the public key",
});

export const ExportPublicJwkSchema = exportJwk.schema.openapi("ExportPublicJwk", {
  description:
    "The public key the export is encrypted to: EC P-256 or P-384, or OKP X25519 (ECDH-ES+A256KW), or RSA of " +
    `at least ${MIN_EXPORT_RSA_BITS} bits (RSA-OAEP-256). Private members are refused.`,
});

/** Only for importing a public-key export: used for this one request, never stored or logged. */
export const ImportPrivateJwkSchema = z
  .looseObject({
    ...exportJwk.members,
    d: Base64UrlSchema.max(1400),
    p: Base64UrlSchema.max(1400).optional(),
    q: Base64UrlSchema.max(1400).optional(),
    dp: Base64UrlSchema.max(1400).optional(),
    dq: Base64UrlSchema.max(1400).optional(),
    qi: Base64UrlSchema.max(1400).optional(),
  })
  .openapi("ImportPrivateJwk", {
    description: "The private key a public-key export was encrypted to. Used for this request only.",
  });

export type ExportPublicJwk = z.infer<typeof ExportPublicJwkSchema>;
export type ImportPrivateJwk = z.infer<typeof ImportPrivateJwkSchema>;

/** Who can open an export: the passphrase, or the holder of the private key matching a public JWK. */
export type Recipient =
  | { kind: "passphrase"; passphrase: string }
  | { kind: "public_key"; key: CryptoKey; alg: PublicKeyAlg; kid: string };

/** What opens an export. */
export type Opener =
  | { kind: "passphrase"; passphrase: string }
  | { kind: "private_key"; jwk: ImportPrivateJwk };

/** The public members of an accepted key and the algorithm it is used with; anything else is refused. */
function exportKeyShape(jwk: ExportPublicJwk): { jwk: JWK; alg: PublicKeyAlg } {
  const members = exportJwk.publicMembers(jwk);
  return { jwk: members, alg: members.kty === "RSA" ? "RSA-OAEP-256" : "ECDH-ES+A256KW" };
}

/** Imports the tenant's public key (WebCrypto refuses a point off the curve or a broken RSA key). */
export async function publicKeyRecipient(input: ExportPublicJwk): Promise<Recipient> {
  const { jwk, alg } = exportKeyShape(input);
  let key: CryptoKey;
  try {
    key = (await importJWK(jwk, alg)) as CryptoKey;
  } catch {
    throw exportJwk.invalid("kty", "could not be imported: check its members");
  }
  return { kind: "public_key", key, alg, kid: await keyFingerprint(jwk as Record<string, string>) };
}

/** A compact JWE of `plaintext` to the recipient, with `extra` protected header parameters. */
export async function encryptTo(
  recipient: Recipient,
  plaintext: Uint8Array,
  extra: Record<string, string | number> = {},
): Promise<string> {
  const jwe = new CompactEncrypt(plaintext);
  if (recipient.kind === "passphrase") {
    return jwe
      .setProtectedHeader({ ...extra, alg: PASSPHRASE_ALG, enc: CONTENT_ENCRYPTION })
      .setKeyManagementParameters({ p2c: PBES2_ITERATIONS })
      .encrypt(utf8(recipient.passphrase));
  }
  return jwe
    .setProtectedHeader({ ...extra, alg: recipient.alg, enc: CONTENT_ENCRYPTION, kid: recipient.kid })
    .encrypt(recipient.key);
}

/** A compact JWE under a 256-bit content key held by the caller (`dir`, RFC 7518 §4.5): a streamed page. */
export function encryptDirect(
  contentKey: Uint8Array,
  plaintext: Uint8Array,
  extra: Record<string, string | number>,
): Promise<string> {
  return new CompactEncrypt(plaintext)
    .setProtectedHeader({ ...extra, alg: "dir", enc: CONTENT_ENCRYPTION })
    .encrypt(contentKey);
}

/**
 * Exports are never compressed, so an import refuses `zip` (RFC 7516 §4.1.3) outright: with it, each line of a
 * 16 MiB body could inflate about a thousandfold (jose's default cap is per JWE, not per import) and exhaust
 * the isolate's memory shared with other tenants' requests (OWASP API4:2023, unrestricted resource use).
 */
const NO_COMPRESSION = 0;

/** The one answer to every JWE that does not open: no oracle on which part was wrong. */
export function unreadableExport(message = "wrong passphrase or key, or the export was altered"): ApiError {
  return new ApiError("VALIDATION_FAILED", `The export could not be opened: ${message}.`, {
    errors: [{ path: "jwe", message }],
  });
}

function protectedHeaderOf(jwe: string): CompactJWEHeaderParameters {
  try {
    return decodeProtectedHeader(jwe) as CompactJWEHeaderParameters;
  } catch {
    throw unreadableExport("not a compact JWE");
  }
}

/**
 * Opens an export's (first) JWE with the passphrase or private key, returning its protected header and
 * plaintext. The algorithms are pinned: what the header asks for must be what the opener can be used with
 * (no `dir`, no RSA1_5, no `none`), and a PBES2 count above PBES2_ITERATIONS is refused before any PBKDF2.
 */
export async function decryptWith(
  jwe: string,
  opener: Opener,
): Promise<{ header: CompactJWEHeaderParameters; plaintext: Uint8Array }> {
  const header = protectedHeaderOf(jwe);
  if (opener.kind === "passphrase") {
    if (header.alg !== PASSPHRASE_ALG)
      throw unreadableExport(`a passphrase opens only ${PASSPHRASE_ALG} exports`);
    if (typeof header.p2c !== "number" || header.p2c > PBES2_ITERATIONS)
      throw unreadableExport(`its PBES2 count must be at most ${PBES2_ITERATIONS}`);
  } else if (!(PUBLIC_KEY_ALGS as readonly string[]).includes(header.alg ?? "")) {
    throw unreadableExport(`a private key opens only ${PUBLIC_KEY_ALGS.join(" or ")} exports`);
  }
  let key: Uint8Array | CryptoKey;
  if (opener.kind === "passphrase") key = utf8(opener.passphrase);
  else {
    try {
      key = (await importJWK(opener.jwk as JWK, header.alg)) as CryptoKey;
    } catch {
      throw new ApiError("VALIDATION_FAILED", "The private key could not be imported.", {
        errors: [{ path: "private_key", message: "could not be imported for this export's algorithm" }],
      });
    }
  }
  try {
    const { plaintext, protectedHeader } = await compactDecrypt(jwe, key, {
      keyManagementAlgorithms: opener.kind === "passphrase" ? [PASSPHRASE_ALG] : [...PUBLIC_KEY_ALGS],
      contentEncryptionAlgorithms: [CONTENT_ENCRYPTION],
      maxPBES2Count: PBES2_ITERATIONS,
      maxDecompressedLength: NO_COMPRESSION,
    });
    return { header: protectedHeader, plaintext };
  } catch {
    throw unreadableExport();
  }
}

/** Opens one `dir` page of a streamed export with its content key. */
export async function decryptDirect(
  jwe: string,
  contentKey: Uint8Array,
): Promise<{ header: CompactJWEHeaderParameters; plaintext: Uint8Array }> {
  try {
    const { plaintext, protectedHeader } = await compactDecrypt(jwe, contentKey, {
      keyManagementAlgorithms: ["dir"],
      contentEncryptionAlgorithms: [CONTENT_ENCRYPTION],
      maxDecompressedLength: NO_COMPRESSION,
    });
    return { header: protectedHeader, plaintext };
  } catch {
    throw unreadableExport();
  }
}

export const encodeContentKey = (key: Uint8Array) => base64url.encode(key);
export function decodeContentKey(value: unknown): Uint8Array {
  try {
    const key = base64url.decode(String(value));
    if (key.byteLength === 32) return key;
  } catch {
    // refused below
  }
  throw unreadableExport("its stream header carries no valid content key");
}
