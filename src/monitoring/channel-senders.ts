import { EmailMessage } from "cloudflare:email";
import { and, eq } from "drizzle-orm";
import { openVersion } from "../credentials/credential-versions";
import { credentialsWithCurrentVersion } from "../credentials/current-versions";
import { openValues } from "../credentials/sealed-fields";
import { toBase64, utf8 } from "../crypto/encoding";
import type { Database } from "../db/client";
import { type alertChannels, credentials } from "../db/schema";
import type { Bindings } from "../env";
import { ApiError } from "../errors";
import type { Unsealed } from "../vault/keyring";
import type { ChannelKind } from "./alert-kinds";
import type { RenderedMessage } from "./alert-message";
import { assertDeliverableUrl, type DeliveryResult, deliver } from "./outbound-url";
import { signWebhook } from "./standard-webhooks";

/** A channel ready to send: its kind, its non-secret settings and its secret ones in plaintext for this call. */
export interface ChannelTarget {
  kind: ChannelKind;
  config: Readonly<Record<string, string>>;
  secrets: Readonly<Record<string, string>>;
}

export interface OutgoingMessage {
  /**
   * Names this notification: the `webhook-id` (Standard Webhooks: the same on every retry, so a receiver
   * de-duplicates) and the e-mail Message-ID. An outbox row's id for an alert; a fresh id for a test.
   */
  id: string;
  message: RenderedMessage;
}

export interface SendOptions {
  /** The attempt's time (epoch ms): the webhook timestamp and the e-mail Date. */
  now: number;
  /** Per-call timeout; default DELIVERY_TIMEOUT_MS (5 s). */
  timeoutMs?: number;
}

export type SenderEnv = Pick<Bindings, "EMAIL" | "ALERT_FROM_ADDRESS" | "ALLOW_LOOPBACK_WEBHOOKS">;

type Sender = (
  env: SenderEnv,
  target: ChannelTarget,
  outgoing: OutgoingMessage,
  options: SendOptions,
) => Promise<DeliveryResult>;

/**
 * Reasons that another attempt cannot change: the channel's stored settings are unusable (a URL the SSRF
 * guard refuses, a missing setting, a SendGrid credential that is gone). The consumer gives up at once.
 */
export const PERMANENT_REASONS = new Set(["url_refused", "channel_misconfigured", "credential_missing"]);

const TWILIO_ACCOUNT_SID = /^AC[0-9a-f]{32}$/;
const SENDGRID_MAIL_SEND = new URL("https://api.sendgrid.com/v3/mail/send");

const misconfigured: DeliveryResult = { delivered: false, reason: "channel_misconfigured" };

/** RFC 2047 encoded-word for a header value that is not plain ASCII. */
function headerText(value: string): string {
  return /^[\u0020-\u007e]*$/.test(value) ? value : `=?utf-8?B?${toBase64(utf8(value))}?=`;
}

/** A plain-text e-mail. The body is base64 (76-character lines), so no line of it can end the headers. */
export function mimeMessage(from: string, to: string, outgoing: OutgoingMessage, now: number): string {
  const body = toBase64(utf8(outgoing.message.text)).replace(/.{76}/g, "$&\r\n");
  return [
    `From: Keywarden <${from}>`,
    `To: <${to}>`,
    `Subject: ${headerText(outgoing.message.subject)}`,
    `Message-ID: <${outgoing.id}@keywarden>`,
    `Date: ${new Date(now).toUTCString()}`,
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=utf-8",
    "Content-Transfer-Encoding: base64",
    "",
    body,
  ].join("\r\n");
}

const sendEmail: Sender = async (env, target, outgoing, options) => {
  const to = target.config.to;
  if (!to) return misconfigured;
  if (target.config.via === "sendgrid") {
    const apiKey = target.secrets.sendgrid_api_key;
    if (!apiKey) return { delivered: false, reason: "credential_missing" };
    // SendGrid v3 Mail Send (www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send): 202 on
    // acceptance; the sender address must be a verified sender identity of the tenant's SendGrid account.
    return deliver(
      SENDGRID_MAIL_SEND,
      {
        headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
        body: JSON.stringify({
          personalizations: [{ to: [{ email: to }] }],
          from: { email: target.config.from || env.ALERT_FROM_ADDRESS, name: "Keywarden" },
          subject: outgoing.message.subject,
          content: [{ type: "text/plain", value: outgoing.message.text }],
          headers: { "X-Keywarden-Notification": outgoing.id },
        }),
      },
      { timeoutMs: options.timeoutMs },
    );
  }
  try {
    await env.EMAIL.send(
      new EmailMessage(
        env.ALERT_FROM_ADDRESS,
        to,
        mimeMessage(env.ALERT_FROM_ADDRESS, to, outgoing, options.now),
      ),
    );
    return { delivered: true };
  } catch {
    // The binding refuses an unverified destination; its message may quote the address, so it is not kept.
    return { delivered: false, reason: "email_rejected" };
  }
};

const sendSlack: Sender = async (_env, target, outgoing, options) => {
  let url: URL;
  try {
    url = assertDeliverableUrl(target.secrets.webhook_url ?? "", false);
  } catch {
    return { delivered: false, reason: "url_refused" };
  }
  if (url.hostname !== "hooks.slack.com") return { delivered: false, reason: "url_refused" };
  return deliver(
    url,
    {
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ text: outgoing.message.slack }),
    },
    { timeoutMs: options.timeoutMs },
  );
};

const sendWebhook: Sender = async (env, target, outgoing, options) => {
  let url: URL;
  try {
    url = assertDeliverableUrl(target.config.url ?? "", env.ALLOW_LOOPBACK_WEBHOOKS === "true");
  } catch {
    return { delivered: false, reason: "url_refused" };
  }
  const secret = target.secrets.signing_secret;
  if (!secret) return misconfigured;
  const body = JSON.stringify({
    type: outgoing.message.event.type,
    timestamp: new Date(options.now).toISOString(),
    data: outgoing.message.event.data,
  });
  const headers = await signWebhook(secret, outgoing.id, Math.floor(options.now / 1000), body);
  return deliver(
    url,
    { headers: { ...headers, "content-type": "application/json" }, body },
    { timeoutMs: options.timeoutMs },
  );
};

const sendSms: Sender = async (_env, target, outgoing, options) => {
  const sid = target.config.twilio_account_sid ?? "";
  const token = target.secrets.twilio_auth_token;
  const { to, from } = target.config;
  // The SID goes into the URL path: only the documented shape may.
  if (!TWILIO_ACCOUNT_SID.test(sid) || !token || !to || !from) return misconfigured;
  // Twilio Messages API (www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource): 201.
  return deliver(
    new URL(`https://api.twilio.com/2010-04-01/Accounts/${sid}/Messages.json`),
    {
      headers: {
        authorization: `Basic ${btoa(`${sid}:${token}`)}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: new URLSearchParams({ To: to, From: from, Body: outgoing.message.short }).toString(),
    },
    { timeoutMs: options.timeoutMs },
  );
};

const SENDERS: Record<ChannelKind, Sender> = {
  email: sendEmail,
  slack: sendSlack,
  webhook: sendWebhook,
  sms: sendSms,
};

/**
 * Sends one message through a channel: the one path of real alerts (src/monitoring/delivery-consumer.ts) and
 * of every "send test" button. HTTP channels go through the SSRF guard again at send time (a stored URL is
 * checked under today's rules, not the ones it was saved under), follow no redirect, time out after 5 s and
 * never read the answer (threat model case 31). The result carries a status and a fixed reason word only.
 */
export function sendToChannel(
  env: SenderEnv,
  target: ChannelTarget,
  outgoing: OutgoingMessage,
  options: SendOptions,
): Promise<DeliveryResult> {
  return SENDERS[target.kind](env, target, outgoing, options);
}

type ChannelRow = Pick<
  typeof alertChannels.$inferSelect,
  "id" | "tenantId" | "kind" | "config" | "sealedSecrets"
>;

/**
 * Opens a stored channel: its sealed settings (AAD-bound to the channel's id) and, for e-mail through the
 * tenant's own SendGrid account (`config.via = "sendgrid"`), the current API key of the stored credential
 * `config.credential_id`. Throws ApiError("NOT_FOUND") when that credential is gone or not a SendGrid one.
 */
export async function openChannel(keys: Unsealed, db: Database, row: ChannelRow): Promise<ChannelTarget> {
  const secrets = await openValues(keys, db, { tenantId: row.tenantId, recordId: row.id }, row.sealedSecrets);
  if (row.kind === "email" && row.config.via === "sendgrid") {
    const found = await credentialsWithCurrentVersion(db)
      .where(
        and(
          eq(credentials.tenantId, row.tenantId),
          eq(credentials.id, row.config.credential_id ?? ""),
          eq(credentials.status, "active"),
          eq(credentials.serviceId, "sendgrid"),
        ),
      )
      .get();
    if (!found) throw new ApiError("NOT_FOUND", "The channel's SendGrid credential is gone.");
    const fields = await openVersion(keys, db, found.version);
    if (fields.api_key) secrets.sendgrid_api_key = fields.api_key;
  }
  return { kind: row.kind, config: row.config, secrets };
}
