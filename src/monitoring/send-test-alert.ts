import { newId } from "../crypto/random";
import type { Channel } from "../wizard/steps";
import { renderTestMessage } from "./alert-message";
import { type ChannelTarget, type SenderEnv, sendToChannel } from "./channel-senders";
import type { DeliveryResult } from "./outbound-url";

export interface TestAlert {
  tenantName: string;
  text: string;
}

/** A channel as the wizard holds it, split into its non-secret settings and its secret ones. */
export function channelTargetOf(channel: Channel, secrets: Readonly<Record<string, string>>): ChannelTarget {
  const { kind, name: _name, ...fields } = channel;
  const config = Object.fromEntries(
    Object.entries(fields).filter(([field, value]) => typeof value === "string" && !(field in secrets)),
  ) as Record<string, string>;
  return { kind, config, secrets };
}

/**
 * Sends one test message through the channel's real delivery path (the same senders as real alerts).
 * `secrets` carries the channel's secret settings in plaintext for this call only (the Slack URL, the webhook
 * signing secret, the Twilio token).
 */
export function sendTestAlert(
  env: SenderEnv,
  channel: Channel,
  secrets: Record<string, string>,
  alert: TestAlert,
): Promise<DeliveryResult> {
  return sendToChannel(
    env,
    channelTargetOf(channel, secrets),
    { id: newId("msg"), message: renderTestMessage(alert.text) },
    { now: Date.now() },
  );
}
