/**
 * The service catalogue. Adding a provider means adding one file under providers/ and one line here.
 */
import { anthropic } from "./providers/anthropic";
import { awsS3 } from "./providers/aws-s3";
import { gemini } from "./providers/gemini";
import { github } from "./providers/github";
import { googleAds } from "./providers/google-ads";
import { googleAnalytics } from "./providers/google-analytics";
import { linkedin } from "./providers/linkedin";
import { metaAds } from "./providers/meta-ads";
import { openai } from "./providers/openai";
import { paypal } from "./providers/paypal";
import { razorpay } from "./providers/razorpay";
import { sendgrid } from "./providers/sendgrid";
import { shopify } from "./providers/shopify";
import { slack } from "./providers/slack";
import { stripe } from "./providers/stripe";
import { twilio } from "./providers/twilio";
import { twilioApiKey } from "./providers/twilio-api-key";
import type { FieldSpec, GeneratableField, ServiceCategory, ServiceDefinition } from "./types";

export type * from "./types";
export { SERVICE_CATEGORIES } from "./types";

export const SERVICE_CATALOG: readonly ServiceDefinition[] = Object.freeze([
  stripe,
  paypal,
  razorpay,
  shopify,
  googleAds,
  metaAds,
  linkedin,
  openai,
  anthropic,
  gemini,
  googleAnalytics,
  awsS3,
  github,
  twilio,
  twilioApiKey,
  sendgrid,
  slack,
]);

const BY_ID = new Map(SERVICE_CATALOG.map((service) => [service.id, service]));

export function findService(id: string): ServiceDefinition | undefined {
  return BY_ID.get(id);
}

export function listServices(filter: { category?: ServiceCategory } = {}): readonly ServiceDefinition[] {
  const { category } = filter;
  return category === undefined
    ? SERVICE_CATALOG
    : SERVICE_CATALOG.filter((service) => service.category === category);
}

/** The catalogue entry as JSON for the API: everything but the probe's code. */
export interface ServiceDescription {
  id: string;
  name: string;
  category: ServiceCategory;
  description: string;
  docs_url: string;
  fields: FieldSpec[];
  generatable: GeneratableField[];
  recommended_rotation_days: number;
  probe_hosts: string[];
  probe_host_pattern: string | null;
}

export function describeService(service: ServiceDefinition): ServiceDescription {
  return {
    id: service.id,
    name: service.name,
    category: service.category,
    description: service.description,
    docs_url: service.docs_url,
    fields: service.fields.map((field) => ({ ...field })),
    generatable: service.generatable.map((spec) => ({ ...spec })),
    recommended_rotation_days: service.recommended_rotation_days,
    probe_hosts: [...service.probe_hosts],
    probe_host_pattern: service.probe_host_pattern ?? null,
  };
}
