/**
 * External rotation, after AWS Secrets Manager's rotation functions: for any service, the tenant registers
 * an endpoint that Keywarden calls at each step of the same rotation Workflow ("create" mints the new
 * value, "test" and "finish" let it check and commit, "revoke" retires a value). Each call is a
 * Standard Webhooks-signed POST (standardwebhooks.com) of
 * `{ type: "rotation.step", step, credential_id, run_id, version, provider_key_id }`, and:
 * - `webhook-id` is `<run id>:<step>`, the same on every retry of that step, so the endpoint can recognise
 *   a repeat and answer it without minting or revoking twice (threat model case 32);
 * - the URL passes the SSRF guard and the request goes through `deliver()` (threat model case 31): https on
 *   443 or 8443 to a public address only, no redirect followed, a timeout, and a size cap on the answer;
 * - a "create" answer is `{ fields: { <catalogue field>: value, ... }, provider_key_id? }` with field names
 *   from the credential's catalogue service; other steps need only a 2xx.
 * A 4xx (but 429) is the endpoint refusing ("refused", the step stops); 429, 5xx, a timeout or no answer is
 * "unavailable" (the step retries with backoff). Messages never carry the answer's body.
 */
import { z } from "zod";
import type { ServiceDefinition } from "../../catalog/types";
import { MAX_FIELD_LENGTH } from "../../catalog/validate";
import type { Bindings } from "../../env";
import { assertDeliverableUrl, deliver } from "../../monitoring/outbound-url";
import { signWebhook } from "../../monitoring/standard-webhooks";
import { failureOfStatus, MAX_ROTATOR_BODY_BYTES, parseJson } from "./provider-http";
import { RotatorError } from "./provider-rotator";

export const EXTERNAL_ROTATION_STEPS = ["create", "test", "finish", "revoke"] as const;
export type ExternalRotationStep = (typeof EXTERNAL_ROTATION_STEPS)[number];

export interface ExternalRotatorCall {
  /** The tenant's registered rotation endpoint. */
  url: string;
  /** Its Standard Webhooks signing secret (`whsec_…`). */
  secret: string;
  step: ExternalRotationStep;
  credentialId: string;
  runId: string;
  /** The credential version the step is about (the one being created, tested, promoted or revoked). */
  version: number;
  /** The endpoint's own id for that version's key, as it answered at "create". */
  providerKeyId?: string | null;
}

/** What the endpoint minted at "create". */
export interface ExternalMinted {
  fields: Record<string, string>;
  provider_key_id?: string;
}

const CreateAnswer = z.object({
  fields: z.record(z.string(), z.string().min(1).max(MAX_FIELD_LENGTH)),
  provider_key_id: z.string().min(1).max(256).optional(),
});

/** The webhook id of one step of one run: stable across retries so the endpoint can dedupe. */
export function externalStepId(runId: string, step: ExternalRotationStep): string {
  return `${runId}:${step}`;
}

export function callExternalRotator(
  env: Pick<Bindings, "ALLOW_LOOPBACK_WEBHOOKS">,
  call: ExternalRotatorCall & { step: "create"; service: ServiceDefinition },
): Promise<ExternalMinted>;
export function callExternalRotator(
  env: Pick<Bindings, "ALLOW_LOOPBACK_WEBHOOKS">,
  call: ExternalRotatorCall & { step: Exclude<ExternalRotationStep, "create"> },
): Promise<null>;
export async function callExternalRotator(
  env: Pick<Bindings, "ALLOW_LOOPBACK_WEBHOOKS">,
  call: ExternalRotatorCall & { service?: ServiceDefinition },
): Promise<ExternalMinted | null> {
  let url: URL;
  try {
    url = assertDeliverableUrl(call.url, env.ALLOW_LOOPBACK_WEBHOOKS === "true");
  } catch {
    // Checked again at call time, not only at registration: nothing is sent to a refused address.
    throw new RotatorError(
      "refused",
      "the rotation endpoint URL is refused (https on port 443 or 8443 to a public host only)",
    );
  }
  const body = JSON.stringify({
    type: "rotation.step",
    step: call.step,
    credential_id: call.credentialId,
    run_id: call.runId,
    version: call.version,
    provider_key_id: call.providerKeyId ?? null,
  });
  // The signing time is the real clock (receivers refuse stale timestamps), unlike the run's logical now.
  const signature = await signWebhook(
    call.secret,
    externalStepId(call.runId, call.step),
    Math.floor(Date.now() / 1000),
    body,
  );
  const result = await deliver(
    url,
    { headers: { ...signature, "content-type": "application/json" }, body },
    call.step === "create" ? { readBodyBytes: MAX_ROTATOR_BODY_BYTES } : {},
  );
  if (!result.delivered) {
    if (result.status === undefined) {
      throw new RotatorError("unavailable", `the rotation endpoint did not answer the ${call.step} step`);
    }
    const failure = result.status >= 300 && result.status < 400 ? "refused" : failureOfStatus(result.status);
    throw new RotatorError(
      failure,
      `the rotation endpoint failed the ${call.step} step: HTTP ${result.status}`,
    );
  }
  if (call.step !== "create") return null;
  if (!call.service) throw new TypeError("the create step needs the credential's catalogue service");
  return readMinted(call.service, result.body ?? "");
}

/** The "create" answer, held to the catalogue service's field names; no value ever reaches a message. */
function readMinted(service: ServiceDefinition, text: string): ExternalMinted {
  const answer = CreateAnswer.safeParse(parseJson(text));
  if (!answer.success) {
    throw new RotatorError(
      "refused",
      "the rotation endpoint's create answer is not { fields, provider_key_id? }",
    );
  }
  const names = Object.keys(answer.data.fields);
  // Unknown names are counted, not echoed: an endpoint's mistake could put a value where a name belongs.
  const unknown = names.filter((name) => !service.fields.some((field) => field.name === name)).length;
  if (unknown > 0) {
    throw new RotatorError(
      "refused",
      `the rotation endpoint answered ${unknown} field name(s) that ${service.id} does not have`,
    );
  }
  if (!service.fields.some((field) => field.secret && names.includes(field.name))) {
    throw new RotatorError("refused", `the rotation endpoint answered no secret field of ${service.id}`);
  }
  return {
    fields: answer.data.fields,
    ...(answer.data.provider_key_id === undefined ? {} : { provider_key_id: answer.data.provider_key_id }),
  };
}
