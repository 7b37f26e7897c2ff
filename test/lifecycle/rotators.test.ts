/**
 * What every provider rotator shares: the registry, the catalogue entries it relies on, minted values that
 * the catalogue itself accepts, and outbound calls only to the provider's one fixed https host.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { findService } from "../../src/catalog";
import { validateCredential } from "../../src/catalog/validate";
import { PROVIDER_ROTATORS, providerRotatorFor } from "../../src/lifecycle/rotators";
import { awsIamRotator } from "../../src/lifecycle/rotators/aws-iam";
import type { ProviderRotator, RotatorCall } from "../../src/lifecycle/rotators/provider-rotator";
import { sendgridRotator } from "../../src/lifecycle/rotators/sendgrid";
import { twilioRotator } from "../../src/lifecycle/rotators/twilio";
import { network } from "../setup/network";
import { AwsIamStandIn } from "./stand-ins/aws-iam";
import { ROTATOR_SCOPES, SendgridStandIn } from "./stand-ins/sendgrid";
import { TwilioStandIn } from "./stand-ins/twilio";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

const TAG = "cred_0123456789abcdefghijkl-1767225600000";

interface Scenario {
  rotator: ProviderRotator;
  host: string;
  /** Sets up the provider stand-in; returns the current version's fields, the rotation credential, settings. */
  setUp(): {
    current: Record<string, string>;
    rotatorFields: Record<string, string>;
    settings: Record<string, string>;
  };
}

const SCENARIOS: readonly Scenario[] = [
  {
    rotator: awsIamRotator,
    host: "iam.amazonaws.com",
    setUp() {
      const aws = new AwsIamStandIn();
      const key = aws.addUser("app");
      const rotator = aws.addRotator("rotator", "app");
      network.use(...aws.handlers());
      return {
        current: { access_key_id: key.id, secret_access_key: key.secret, region: "eu-west-1" },
        rotatorFields: { access_key_id: rotator.id, secret_access_key: rotator.secret, region: "us-east-1" },
        settings: { user_name: "app" },
      };
    },
  },
  {
    rotator: twilioRotator,
    host: "iam.twilio.com",
    setUp() {
      const twilio = new TwilioStandIn();
      const key = twilio.addKey("production");
      network.use(...twilio.handlers());
      return {
        current: { account_sid: twilio.accountSid, api_key_sid: key.sid, api_key_secret: key.secret },
        rotatorFields: { account_sid: twilio.accountSid, auth_token: twilio.authToken },
        settings: {},
      };
    },
  },
  {
    rotator: sendgridRotator,
    host: "api.sendgrid.com",
    setUp() {
      const sendgrid = new SendgridStandIn();
      const key = sendgrid.addKey("mail", ["mail.send"]);
      const rotator = sendgrid.addKey("rotation", ROTATOR_SCOPES);
      network.use(...sendgrid.handlers());
      return { current: { api_key: key.key }, rotatorFields: { api_key: rotator.key }, settings: {} };
    },
  },
];

describe("the provider rotator registry", () => {
  it("finds each rotator by the catalogue service it rotates, and nothing for a service without one", () => {
    expect(PROVIDER_ROTATORS.map((rotator) => rotator.serviceId).sort()).toEqual([
      "aws-s3",
      "sendgrid",
      "twilio-api-key",
    ]);
    for (const rotator of PROVIDER_ROTATORS) expect(providerRotatorFor(rotator.serviceId)).toBe(rotator);
    expect(providerRotatorFor("stripe")).toBeUndefined();
    expect(providerRotatorFor("twilio")).toBeUndefined();
  });

  it.each(PROVIDER_ROTATORS.map((rotator) => [rotator.serviceId, rotator] as const))(
    "%s: the rotated service and the rotation credential's service are both in the catalogue",
    (_id, rotator) => {
      expect(findService(rotator.serviceId)).toBeDefined();
      expect(findService(rotator.rotatorServiceId)).toBeDefined();
    },
  );
});

describe.each(SCENARIOS.map((scenario) => [scenario.rotator.serviceId, scenario] as const))(
  "%s rotator",
  (_id, scenario) => {
    it("mints values the catalogue accepts at the enterprise level in production", async () => {
      const { current, rotatorFields, settings } = scenario.setUp();
      const call: RotatorCall<Record<string, string>> = {
        fetch: (input, init) => fetch(input, init),
        rotatorFields,
        settings: scenario.rotator.settingsSchema.parse(settings),
      };
      const minted = await scenario.rotator.mint(call, current, TAG);
      const service = findService(scenario.rotator.serviceId);
      if (!service) throw new Error("not in the catalogue");
      const validation = validateCredential(service, minted.fields, {
        environment: "production",
        securityLevel: "enterprise",
      });
      expect(validation.errors).toEqual([]);
      expect(validation.ok).toBe(true);
      expect(scenario.rotator.providerKeyIdOf(minted.fields)).toBe(minted.providerKeyId);
      expect(scenario.rotator.providerKeyIdOf(current)).not.toBe(minted.providerKeyId);
    });

    it("calls only https on the provider's fixed host, with no redirect followed and a timeout (threat model case 31)", async () => {
      const { current, rotatorFields, settings } = scenario.setUp();
      const seen: { url: URL; redirect?: RequestInit["redirect"]; signal: boolean }[] = [];
      const call: RotatorCall<Record<string, string>> = {
        fetch: (input, init) => {
          seen.push({
            url: new URL(input instanceof Request ? input.url : String(input)),
            redirect: init?.redirect,
            signal: init?.signal instanceof AbortSignal,
          });
          return fetch(input, init);
        },
        rotatorFields,
        settings: scenario.rotator.settingsSchema.parse(settings),
      };
      const minted = await scenario.rotator.mint(call, current, TAG);
      const old = scenario.rotator.providerKeyIdOf(current);
      if (!old) throw new Error("the current key has no provider id");
      await scenario.rotator.revoke(call, old);
      await scenario.rotator.revoke(call, minted.providerKeyId);

      expect(seen.length).toBeGreaterThan(2);
      for (const request of seen) {
        expect(request.url.protocol).toBe("https:");
        expect(request.url.host).toBe(scenario.host);
        expect(request.redirect).toBe("manual");
        expect(request.signal).toBe(true);
      }
    });
  },
);
