/**
 * The provider rotators: one per catalogue service whose provider can mint and revoke that service's keys
 * through its own API. A service without one rotates externally (the tenant's endpoint, external.ts) or
 * with assisted rotation (an admin enters the new value).
 */
import { awsIamRotator } from "./aws-iam";
import type { ProviderRotator } from "./provider-rotator";
import { sendgridRotator } from "./sendgrid";
import { twilioRotator } from "./twilio";

export const PROVIDER_ROTATORS: readonly ProviderRotator[] = Object.freeze([
  awsIamRotator,
  twilioRotator,
  sendgridRotator,
]);

const BY_SERVICE = new Map(PROVIDER_ROTATORS.map((rotator) => [rotator.serviceId, rotator]));

/** The automatic rotator for a catalogue service's credentials, if its provider has one. */
export function providerRotatorFor(serviceId: string): ProviderRotator | undefined {
  return BY_SERVICE.get(serviceId);
}
