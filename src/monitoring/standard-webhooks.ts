import { fromBase64, toBase64, utf8 } from "../crypto/encoding";
import { randomBytes } from "../crypto/random";

/** A new signing secret in the Standard Webhooks format: `whsec_` + base64 of 32 random bytes. */
export function newSigningSecret(): string {
  return `whsec_${toBase64(randomBytes(32))}`;
}

/**
 * Standard Webhooks signature (standardwebhooks.com spec §"Signature scheme"): HMAC-SHA256 over
 * `${id}.${timestamp}.${body}` with the base64-decoded secret, sent as `v1,<base64>`.
 */
export async function signWebhook(
  secret: string,
  id: string,
  timestamp: number,
  body: string,
): Promise<Record<string, string>> {
  const key = await crypto.subtle.importKey(
    "raw",
    fromBase64(secret.replace(/^whsec_/, "")),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const signature = await crypto.subtle.sign("HMAC", key, utf8(`${id}.${timestamp}.${body}`));
  return {
    "webhook-id": id,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": `v1,${toBase64(new Uint8Array(signature))}`,
  };
}
