import type { alerts } from "../db/schema";
import type { DeliveryTransition } from "./alert-kinds";
import { consoleLink } from "./console-links";

/** The alert fields a message is written from (a row of `alerts`). */
export type AlertForMessage = Pick<
  typeof alerts.$inferSelect,
  | "id"
  | "kind"
  | "severity"
  | "state"
  | "subjectType"
  | "subjectId"
  | "summary"
  | "detail"
  | "firedAt"
  | "resolvedAt"
>;

/** One notification in the form each channel kind sends. */
export interface RenderedMessage {
  /** E-mail subject: one line, no control characters (no header injection). */
  subject: string;
  /** Plain text: the e-mail body. */
  text: string;
  /** SMS: one short line with the console link. */
  short: string;
  /** Slack mrkdwn, with the characters Slack treats as markup escaped. */
  slack: string;
  /** Standard Webhooks payload: `type` and `data` (the sender adds `timestamp`). */
  event: { type: string; data: Record<string, unknown> };
}

const SUBJECT_MAX = 140;
const SMS_SUMMARY_MAX = 100;

/**
 * The message of one alert transition: severity, what happened, about what, and a link to the console page.
 * Built only from the alert row, whose summary and detail never hold a secret (src/monitoring/evaluation.ts);
 * no channel setting, credential value or receiver answer ever reaches it.
 */
export function renderAlert(
  alert: AlertForMessage,
  transition: DeliveryTransition,
  publicOrigin: string,
): RenderedMessage {
  const summary = oneLine(alert.summary, 500);
  const alertUrl = consoleLink(publicOrigin, "alert", alert.id) as string;
  const subjectUrl = consoleLink(publicOrigin, alert.subjectType, alert.subjectId);
  const severity = alert.severity.toUpperCase();
  const headline = transition === "fired" ? `${severity} alert firing` : `Resolved (${alert.severity})`;
  const about = `${alert.subjectType} ${alert.subjectId}`;
  const details = Object.entries(alert.detail)
    .filter(([, value]) => value !== null)
    .map(([name, value]) => `${name}=${oneLine(String(value), 200)}`);
  const text = [
    `${headline}: ${summary}`,
    `Rule: ${alert.kind}. About: ${about}.`,
    `Fired: ${iso(alert.firedAt)}${transition === "resolved" && alert.resolvedAt ? `. Resolved: ${iso(alert.resolvedAt)}` : ""}.`,
    ...(details.length ? [`Details: ${details.join(", ")}`] : []),
    `Alert: ${alertUrl}`,
    ...(subjectUrl ? [`${capitalised(alert.subjectType)}: ${subjectUrl}`] : []),
  ].join("\n");
  const slackLinks = [
    `<${alertUrl}|Open the alert>`,
    ...(subjectUrl ? [`<${subjectUrl}|Open the ${alert.subjectType}>`] : []),
  ];
  return {
    subject: oneLine(`[Keywarden] ${headline}: ${summary}`, SUBJECT_MAX),
    text,
    short: `Keywarden ${transition === "fired" ? severity : "RESOLVED"}: ${oneLine(summary, SMS_SUMMARY_MAX)} ${alertUrl}`,
    slack: [
      `*${slackEscape(headline)}*: ${slackEscape(summary)}`,
      `${slackEscape(alert.kind)} · ${slackEscape(about)} · ${slackLinks.join(" · ")}`,
    ].join("\n"),
    event: {
      type: `alert.${transition}`,
      data: {
        alert: {
          id: alert.id,
          kind: alert.kind,
          severity: alert.severity,
          state: alert.state,
          subject: { type: alert.subjectType, id: alert.subjectId },
          summary: alert.summary,
          detail: alert.detail,
          fired_at: iso(alert.firedAt),
          resolved_at: alert.resolvedAt === null ? null : iso(alert.resolvedAt),
          url: alertUrl,
        },
      },
    },
  };
}

/** The "send test" message of a channel: the same shapes, type `keywarden.test`. */
export function renderTestMessage(text: string): RenderedMessage {
  return {
    subject: "Keywarden test alert",
    text,
    short: text,
    slack: slackEscape(text),
    event: { type: "keywarden.test", data: { message: text } },
  };
}

/** One line: control characters (CR and LF included) become spaces; cut at `max` characters. */
export function oneLine(text: string, max: number): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removing control characters is the point.
  const flat = text.replace(/[\u0000-\u001f\u007f\u2028\u2029]+/g, " ").trim();
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`;
}

/**
 * Slack reads `&`, `<` and `>` as markup: `<!channel>` pings everyone and `<https://x|text>` disguises a
 * link. A name an attacker chose (a key's name in a summary) is escaped so it stays text
 * (api.slack.com/reference/surfaces/formatting#escaping).
 */
export function slackEscape(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function capitalised(word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1);
}
