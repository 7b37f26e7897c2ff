// The alert channel kinds and their settings (src/monitoring/channels.ts ChannelSchema), for the setup
// wizard's monitoring step and the console's channel form and channel page: one list, so a label or a kind
// changes in one place.
//
// Each field: `name` (the API's), `label` (the form's), `type` (an input type, or "select" with `options`
// [value, text]), `secret` (stored encrypted, never shown again), `wizard: false` (not offered by the setup
// wizard: SendGrid delivery names a stored SendGrid credential by id, so it is set up in the console later).
export const CHANNEL_KINDS = {
  email: {
    label: "Email",
    fields: [
      { name: "to", label: "Email address", type: "email" },
      {
        name: "via",
        label: "Send with",
        type: "select",
        options: [
          ["email_binding", "Keywarden's mail binding"],
          ["sendgrid", "Our SendGrid credential"],
        ],
        wizard: false,
      },
      { name: "credential_id", label: "SendGrid credential id (with SendGrid)", type: "text", wizard: false },
      { name: "from", label: "From address (with SendGrid; verified there)", type: "email", wizard: false },
    ],
  },
  slack: {
    label: "Slack",
    fields: [{ name: "webhook_url", label: "Slack incoming webhook URL", type: "url", secret: true }],
  },
  webhook: { label: "Webhook", fields: [{ name: "url", label: "Webhook URL (https)", type: "url" }] },
  sms: {
    label: "SMS (Twilio)",
    fields: [
      { name: "to", label: "Send to (E.164, e.g. +14155550100)", type: "tel" },
      { name: "from", label: "From (your Twilio number)", type: "tel" },
      { name: "twilio_account_sid", label: "Twilio account SID", type: "text" },
      { name: "twilio_auth_token", label: "Twilio auth token", type: "password", secret: true },
    ],
  },
};

/** The kind's name for people; an unknown kind as it is. */
export const channelKindLabel = (kind) => CHANNEL_KINDS[kind]?.label ?? kind;

/** The fields the setup wizard offers for a kind. */
export const wizardFields = (kind) => CHANNEL_KINDS[kind].fields.filter((f) => f.wizard !== false);

const fieldOf = (kind, name) => CHANNEL_KINDS[kind]?.fields.find((f) => f.name === name);

/** A setting's name as the channel form labels it (one the form does not show, such as signing_secret, in words). */
export const channelFieldLabel = (kind, name) => fieldOf(kind, name)?.label ?? name.replaceAll("_", " ");

/** A stored setting as the channel form shows it: [label, value], a select's value by its option's text. */
export const channelSetting = (kind, name, value) => [
  channelFieldLabel(kind, name),
  fieldOf(kind, name)?.options?.find(([v]) => v === value)?.[1] ?? value,
];
