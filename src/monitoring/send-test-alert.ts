import { EmailMessage } from "cloudflare:email";
import { newId } from "../crypto/random";
import type { Bindings } from "../env";
import type { Channel } from "../wizard/steps";
import { assertDeliverableUrl, type DeliveryResult, deliver } from "./outbound-url";
import { signWebhook } from "./standard-webhooks";

export interface TestAlert {
  tenantName: string;
  text: string;
}

function mime(from: string, to: string, subject: string, text: string): string {
  return [
    `From: Keywarden <${from}>`,
    `To: <${to}>`,
    `Subject: ${subject}`,
    `Message-ID: <${crypto.randomUUID()}@keywarden>`,
    `Date: ${new Date().toUTCString()}`,
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=utf-8",
    "",
    text,
  ].join("\r\n");
}

/**
 * Sends one test message through the channel's real delivery path. `secrets` carries the channel's
 * secret settings in plaintext for this call only (the Slack URL, the webhook signing secret, the Twilio token).
 */
export async function sendTestAlert(
  env: Pick<Bindings, "EMAIL" | "ALERT_FROM_ADDRESS" | "ALLOW_LOOPBACK_WEBHOOKS">,
  channel: Channel,
  secrets: Record<string, string>,
  alert: TestAlert,
): Promise<DeliveryResult> {
  const allowLoopback = env.ALLOW_LOOPBACK_WEBHOOKS === "true";
  switch (channel.kind) {
    case "email": {
      try {
        await env.EMAIL.send(
          new EmailMessage(
            env.ALERT_FROM_ADDRESS,
            channel.to,
            mime(env.ALERT_FROM_ADDRESS, channel.to, "Keywarden test alert", alert.text),
          ),
        );
        return { delivered: true };
      } catch {
        return { delivered: false, reason: "email_rejected" };
      }
    }
    case "slack":
      return deliver(assertDeliverableUrl(secrets.webhook_url ?? "", false), {
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ text: alert.text }),
      });
    case "webhook": {
      const body = JSON.stringify({
        type: "keywarden.test",
        timestamp: new Date().toISOString(),
        data: { message: alert.text },
      });
      const headers = await signWebhook(
        secrets.signing_secret ?? "",
        newId("msg"),
        Math.floor(Date.now() / 1000),
        body,
      );
      return deliver(assertDeliverableUrl(channel.url, allowLoopback), {
        headers: { ...headers, "content-type": "application/json" },
        body,
      });
    }
    case "sms": {
      const url = new URL(
        `https://api.twilio.com/2010-04-01/Accounts/${channel.twilio_account_sid}/Messages.json`,
      );
      return deliver(url, {
        headers: {
          authorization: `Basic ${btoa(`${channel.twilio_account_sid}:${secrets.twilio_auth_token ?? ""}`)}`,
          "content-type": "application/x-www-form-urlencoded",
        },
        body: new URLSearchParams({ To: channel.to, From: channel.from, Body: alert.text }).toString(),
      });
    }
  }
}
