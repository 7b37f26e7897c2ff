import { z } from "@hono/zod-openapi";
import { base64url } from "jose";
import { ApiError } from "../errors";

/**
 * The public JWKs tenants hand Keywarden to encrypt to: a rotated key's delivery endpoint
 * (src/lifecycle/delivery-endpoint.ts) and an export's recipient (src/portability/export-jwe.ts). Both accept
 * EC, OKP X25519 and RSA encryption keys; each names its curves, RSA floor and EC algorithm (`JwkPolicy`).
 */

/** Private members of EC, OKP and RSA JWKs (RFC 7518 §6.2.2, §6.3.2; RFC 8037 §2), and a symmetric key's `k`. */
export const PRIVATE_JWK_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] as const;

/** No RSA modulus above this: a larger one only costs CPU, on every encryption. */
export const MAX_RSA_BITS = 8192;

export const Base64UrlSchema = z.string().regex(/^[A-Za-z0-9_-]+$/, "must be base64url without padding");

/** The members a public encryption JWK may carry (RFC 7517 §4, RFC 7518 §6), `x` and `y` up to `coordinateMax`. */
function publicJwkMembers<const Algs extends readonly [string, ...string[]]>(
  algs: Algs,
  coordinateMax: number,
) {
  return {
    kty: z.enum(["EC", "OKP", "RSA"]),
    crv: z.string().max(16).optional(),
    x: Base64UrlSchema.max(coordinateMax).optional(),
    y: Base64UrlSchema.max(coordinateMax).optional(),
    n: Base64UrlSchema.max(1400).optional(),
    e: Base64UrlSchema.max(8).optional(),
    alg: z.enum(algs).optional(),
    use: z.literal("enc").optional(),
    kid: z.string().max(200).optional(),
  };
}

/**
 * A `superRefine` refusing every private member. The private half must never reach Keywarden: refusing it
 * (rather than stripping it) tells the tenant that they pasted the wrong key and should treat it as exposed.
 */
function refusePrivateMembers(message: string) {
  return (jwk: Record<string, unknown>, ctx: z.RefinementCtx): void => {
    for (const member of PRIVATE_JWK_MEMBERS) {
      if (member in jwk) ctx.addIssue({ code: "custom", path: [member], message });
    }
  };
}

/** What one use of a public JWK accepts. */
interface JwkPolicy<Algs extends readonly [string, ...string[]]> {
  /** The request body's member holding the key: named in VALIDATION_FAILED paths. */
  field: string;
  /** The algorithm EC and OKP keys are used with. */
  ecAlg: string;
  /** The EC curves accepted (OKP is always X25519). */
  curves: readonly string[];
  minRsaBits: number;
  /** The `alg` values the key may name. */
  algs: Algs;
  /** The most base64url characters of `x` and `y`. */
  coordinateMax: number;
  /** The VALIDATION_FAILED message for a private member. */
  privateMemberMessage: string;
}

function invalidJwk(policy: { field: string }, path: string, message: string): ApiError {
  return new ApiError("VALIDATION_FAILED", `The public key ${message}.`, {
    errors: [{ path: `${policy.field}.${path}`, message }],
  });
}

function bitLength(bytes: Uint8Array): number {
  const first = bytes.findIndex((byte) => byte !== 0);
  if (first < 0) return 0;
  return (bytes.length - first - 1) * 8 + (32 - Math.clz32(bytes[first] ?? 0));
}

export function modulusBits(n: string): number {
  try {
    return bitLength(base64url.decode(n));
  } catch {
    return 0;
  }
}

interface PublicJwkInput {
  kty: "EC" | "OKP" | "RSA";
  crv?: string | undefined;
  x?: string | undefined;
  y?: string | undefined;
  n?: string | undefined;
  e?: string | undefined;
  alg?: string | undefined;
}

export type PublicKeyMembers =
  | { kty: "RSA"; n: string; e: string }
  | { kty: "EC"; crv: string; x: string; y: string }
  | { kty: "OKP"; crv: "X25519"; x: string };

/**
 * Only the members that define the public key, once the key is one the policy accepts; VALIDATION_FAILED
 * naming the member otherwise. Everything else the tenant sent (`kid`, `use`, `key_ops`, certificates) is
 * dropped. RSA is used with RSA-OAEP-256 only (not RSA1_5, open to padding-oracle attacks, nor OAEP with SHA-1).
 */
function publicKeyMembers(
  jwk: PublicJwkInput,
  policy: Pick<JwkPolicy<readonly [string]>, "field" | "ecAlg" | "curves" | "minRsaBits">,
): PublicKeyMembers {
  const invalid = (path: string, message: string) => invalidJwk(policy, path, message);
  if (jwk.kty === "RSA") {
    if (!jwk.n || !jwk.e) throw invalid("n", "needs both n and e");
    if (jwk.alg && jwk.alg !== "RSA-OAEP-256") throw invalid("alg", "of an RSA key must be RSA-OAEP-256");
    const bits = modulusBits(jwk.n);
    if (bits < policy.minRsaBits || bits > MAX_RSA_BITS)
      throw invalid("n", `must be an RSA modulus of ${policy.minRsaBits} to ${MAX_RSA_BITS} bits`);
    return { kty: "RSA", n: jwk.n, e: jwk.e };
  }
  if (jwk.alg && jwk.alg !== policy.ecAlg)
    throw invalid("alg", `of an EC or OKP key must be ${policy.ecAlg}`);
  if (jwk.kty === "EC") {
    if (!jwk.crv || !policy.curves.includes(jwk.crv))
      throw invalid("crv", `must be on curve ${policy.curves.join(" or ")}`);
    if (!jwk.x || !jwk.y) throw invalid("x", "needs both x and y");
    return { kty: "EC", crv: jwk.crv, x: jwk.x, y: jwk.y };
  }
  if (jwk.crv !== "X25519") throw invalid("crv", "of an OKP key must be X25519");
  if (!jwk.x || jwk.y) throw invalid("x", "of an X25519 key is x alone");
  return { kty: "OKP", crv: "X25519", x: jwk.x };
}

/**
 * One use of tenant-supplied public JWKs: its body members (`members`, to extend), the request schema
 * refusing private members (`schema`, to name with `.openapi`), the check keeping only the members that
 * define an accepted key (`publicMembers`), and its VALIDATION_FAILED (`invalid`).
 */
export function publicJwkRule<const Algs extends readonly [string, ...string[]]>(policy: JwkPolicy<Algs>) {
  const members = publicJwkMembers(policy.algs, policy.coordinateMax);
  return {
    members,
    schema: z.looseObject(members).superRefine(refusePrivateMembers(policy.privateMemberMessage)),
    publicMembers: (jwk: PublicJwkInput) => publicKeyMembers(jwk, policy),
    invalid: (path: string, message: string) => invalidJwk(policy, path, message),
  };
}
