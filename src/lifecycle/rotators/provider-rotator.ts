import type { z } from "zod";

/** A key the provider just minted: its field values (secret) and the provider's own id for it (not secret). */
export interface MintedKey {
  fields: Record<string, string>;
  providerKeyId: string;
}

/** Why a provider call failed, which decides whether the Workflow step may retry it. */
export type RotatorFailure =
  /** The provider refused (4xx other than 429): retrying sends the same refused request. */
  | "refused"
  /** 5xx, 429, a timeout or a network error: worth retrying with backoff. */
  | "unavailable";

export class RotatorError extends Error {
  constructor(
    readonly failure: RotatorFailure,
    message: string,
  ) {
    super(message);
    this.name = "RotatorError";
  }
}

export interface RotatorCall<Settings> {
  /** Outbound fetch (src/credentials/provider-fetch.ts: a loopback stand-in locally, the real API deployed). */
  fetch: typeof fetch;
  /** The rotation credential's field values: the least-privileged key that may mint and revoke. */
  rotatorFields: Readonly<Record<string, string>>;
  /** Non-secret per-credential settings (e.g. the AWS IAM user name), validated by `settings`. */
  settings: Settings;
}

/**
 * Automatic dual-phase rotation against a provider's own API (AWS IAM access keys, Twilio API keys, SendGrid
 * API keys). Every method is idempotent under a retry of its Workflow step: `mint` first revokes any key an
 * earlier attempt of the same run created (tagged with `tag`) and lost, so a re-run never leaves two new keys
 * at the provider; `revoke` treats "already gone" as done.
 */
export interface ProviderRotator<Settings extends Record<string, string> = Record<string, string>> {
  /** The catalogue service whose credentials this rotator rotates. */
  serviceId: string;
  /** The catalogue service of the rotation credential it needs. */
  rotatorServiceId: string;
  settingsSchema: z.ZodType<Settings>;
  /**
   * Mints a new key. `currentFields` is the current version's values, for the fields that do not change (an
   * account SID, a region). `tag` is the rotation run id: the provider-side name or description of the key.
   */
  mint(
    call: RotatorCall<Settings>,
    currentFields: Readonly<Record<string, string>>,
    tag: string,
  ): Promise<MintedKey>;
  /** Revokes (deactivates, then deletes where the provider has both) the key `providerKeyId`. */
  revoke(call: RotatorCall<Settings>, providerKeyId: string): Promise<void>;
  /** The provider's id of the key a version's fields hold (e.g. the AWS access key id), if it can tell. */
  providerKeyIdOf(fields: Readonly<Record<string, string>>): string | null;
}
