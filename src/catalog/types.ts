/**
 * The service catalogue's vocabulary. A provider is one `ServiceDefinition`: plain data (fields, formats,
 * docs) plus a probe, which says which request proves a credential and how to read the answer. The shared
 * mechanics of actually sending that request (host allow-list, timeout, no redirects) live in run-probe.ts.
 */

export type ServiceCategory =
  | "payment"
  | "marketing"
  | "ai"
  | "analytics"
  | "infrastructure"
  | "communication";

export const SERVICE_CATEGORIES: readonly ServiceCategory[] = [
  "payment",
  "marketing",
  "ai",
  "analytics",
  "infrastructure",
  "communication",
];

export type Environment = "development" | "staging" | "production";
export type SecurityLevel = "basic" | "enhanced" | "enterprise";

/** Field name -> submitted value. */
export type CredentialFields = Readonly<Record<string, string>>;

/**
 * How a value tells test mode from live mode. Both are anchored regex sources. A service whose values do
 * not say (PayPal, AWS, OpenAI, ...) has no marker on any field, and detection yields `null`.
 */
export interface EnvironmentMarker {
  test: string;
  live: string;
}

export interface FieldSpec {
  name: string;
  label: string;
  /** Secret fields are encrypted at rest and masked in every listing; the others are identifiers. */
  secret: boolean;
  required: boolean;
  /** Anchored regex source (`^...$`), matched against the whole value. */
  pattern: string;
  /**
   * The value's shape for the wizard's placeholder text. Never a real key, and written so that it is itself
   * refused as a placeholder if someone pastes it back.
   */
  example: string;
  environment_marker?: EnvironmentMarker;
}

export type GeneratedAlphabet = "hex" | "base62" | "base64url";

/** A field Keywarden can fill itself, e.g. a webhook secret that the tenant then pastes into the provider. */
export interface GeneratableField {
  field: string;
  /** Random characters after the prefix. */
  length: number;
  alphabet: GeneratedAlphabet;
  prefix?: string;
}

export interface ProbeContext {
  /** Which of the tenant's environments the credential is for; PayPal picks its sandbox or live host by it. */
  environment: Environment;
  /** Epoch milliseconds; injectable so request signing (SigV4) is testable. */
  now: () => number;
}

export interface ProbeRequest {
  method: "GET" | "POST";
  url: string;
  headers: Record<string, string>;
  body?: string;
}

/** What a provider's interpreter sees: the status, headers and a size-capped body. */
export interface ProbeResponse {
  status: number;
  headers: Headers;
  /** Parsed JSON body, or `undefined` when the body is not JSON. */
  json: unknown;
  text: string;
}

export type ProbeStatus = "valid" | "invalid" | "unknown";

/** A provider's reading of a response. Reasons are fixed snake_case words, never provider or user text. */
export interface ProbeVerdict {
  status: ProbeStatus;
  reason: string;
  /** Epoch milliseconds when the credential stops working, `null` when the provider says it never does. */
  expires_at?: number | null;
  /** The provider's identity for the account or principal (AWS ARN, Slack team id, ...). */
  account?: string | null;
  retry_after_s?: number;
}

export interface ProbeDefinition {
  /** The least intrusive authenticated call: read-only, spends nothing, creates nothing lasting. */
  request(fields: CredentialFields, ctx: ProbeContext): ProbeRequest | Promise<ProbeRequest>;
  /**
   * Reads any answer the shared runner has not already classified. The runner handles redirects, 401,
   * 429 and 5xx itself, so this sees 2xx and the remaining 4xx.
   */
  interpret(response: ProbeResponse, fields: CredentialFields, ctx: ProbeContext): ProbeVerdict;
}

export interface ServiceDefinition {
  id: string;
  name: string;
  category: ServiceCategory;
  description: string;
  docs_url: string;
  fields: readonly FieldSpec[];
  generatable: readonly GeneratableField[];
  recommended_rotation_days: number;
  /** The only hosts a probe may contact (SSRF guard, docs/threat-model.md "Outbound calls"). */
  probe_hosts: readonly string[];
  /** For providers whose host is per customer (Shopify): an anchored regex the host must match instead. */
  probe_host_pattern?: string;
  probe: ProbeDefinition;
}
