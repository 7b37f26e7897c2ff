/**
 * The Twilio API-key rotator against a stand-in of Twilio's Key resource v1 that keeps the account's keys
 * in memory: success (and the minted key passing the `twilio-api-key` live probe), refusals, outages and
 * partial successes, judged by the keys Twilio ends up holding.
 */
import { HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { findService } from "../../src/catalog";
import { runProbe } from "../../src/catalog/run-probe";
import { validateCredential } from "../../src/catalog/validate";
import type { RotatorCall } from "../../src/lifecycle/rotators/provider-rotator";
import { type TwilioSettings, twilioRotator } from "../../src/lifecycle/rotators/twilio";
import { network } from "../setup/network";
import { rotatorFailure } from "./stand-ins/rotator-failure";
import { type TwilioKey, TwilioStandIn, twilioError } from "./stand-ins/twilio";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

const TAG = "cred_0123456789abcdefghijkl-1767225600000";
const NAME = `keywarden:${TAG}`;

let twilio: TwilioStandIn;
let current: TwilioKey;
let currentFields: Record<string, string>;

function call(fetchImpl?: typeof fetch): RotatorCall<TwilioSettings> {
  return {
    fetch: fetchImpl ?? ((input, init) => fetch(input, init)),
    rotatorFields: { account_sid: twilio.accountSid, auth_token: twilio.authToken },
    settings: {},
  };
}

beforeEach(() => {
  twilio = new TwilioStandIn();
  current = twilio.addKey("production");
  currentFields = {
    account_sid: twilio.accountSid,
    api_key_sid: current.sid,
    api_key_secret: current.secret,
  };
  network.use(...twilio.handlers());
});

describe("Twilio rotator: mint", () => {
  it("creates a key named after the run with the account's Auth Token, and the new key passes the live probe", async () => {
    const minted = await twilioRotator.mint(call(), currentFields, TAG);

    const [created] = twilio.keysNamed(NAME);
    expect(twilio.keys).toHaveLength(2);
    expect(minted).toEqual({
      fields: { account_sid: twilio.accountSid, api_key_sid: created?.sid, api_key_secret: created?.secret },
      providerKeyId: created?.sid,
    });
    const create = twilio.log.find((entry) => entry.operation === "create");
    expect(create?.url.href).toBe("https://iam.twilio.com/v1/Keys");
    expect(create?.headers["content-type"]).toBe("application/x-www-form-urlencoded");
    expect(Object.fromEntries(new URLSearchParams(create?.body))).toEqual({
      AccountSid: twilio.accountSid,
      FriendlyName: NAME,
    });

    const service = findService("twilio-api-key");
    if (!service) throw new Error("twilio-api-key is not in the catalogue");
    expect(
      validateCredential(service, minted.fields, { environment: "production", securityLevel: "enterprise" })
        .ok,
    ).toBe(true);
    expect(await runProbe(service, minted.fields)).toMatchObject({
      status: "valid",
      reason: "authenticated",
      account: twilio.accountSid,
    });
  });

  it("after the create answer was lost, the retry deletes the key named after the run and Twilio ends with exactly one new key (threat model case 32)", async () => {
    twilio.faults.next("create", "lose_answer");
    expect((await rotatorFailure(twilioRotator.mint(call(), currentFields, TAG))).failure).toBe(
      "unavailable",
    );
    expect(twilio.keysNamed(NAME)).toHaveLength(1);

    const minted = await twilioRotator.mint(call(), currentFields, TAG);
    expect(twilio.keysNamed(NAME).map((key) => key.sid)).toEqual([minted.providerKeyId]);
    expect(twilio.keys.map((key) => key.sid).sort()).toEqual([current.sid, minted.providerKeyId].sort());
  });

  it("leaves keys of other runs and other names alone", async () => {
    const earlier = twilio.addKey("keywarden:cred_0123456789abcdefghijkl-1759449600000");
    const console = twilio.addKey("made in the Console");
    await twilioRotator.mint(call(), currentFields, TAG);
    expect(twilio.keys.map((key) => key.sid)).toEqual(
      expect.arrayContaining([current.sid, earlier.sid, console.sid]),
    );
    expect(twilio.keys).toHaveLength(4);
  });

  it("finds an orphan on a later page of the key list", async () => {
    for (let i = 0; i < 5; i++) twilio.addKey(`other ${i}`);
    twilio.addKey(NAME);
    twilio.pageLimit = 2;
    const minted = await twilioRotator.mint(call(), currentFields, TAG);
    expect(twilio.keysNamed(NAME).map((key) => key.sid)).toEqual([minted.providerKeyId]);
    expect(twilio.log.filter((entry) => entry.operation === "list")).toHaveLength(4);
  });

  it("never follows a next_page_url to another host (threat model case 31)", async () => {
    let foreign = 0;
    network.use(
      http.get("https://iam.twilio.com/v1/Keys", () =>
        HttpResponse.json({ keys: [], meta: { next_page_url: "https://collector.example/v1/Keys?Page=1" } }),
      ),
      http.all("https://collector.example/*", () => {
        foreign++;
        return HttpResponse.json({ keys: [] });
      }),
    );
    expect((await rotatorFailure(twilioRotator.mint(call(), currentFields, TAG))).failure).toBe("refused");
    expect(foreign).toBe(0);
    expect(twilio.keys).toHaveLength(1);
  });

  it("reports a wrong Auth Token (401, error 20003) as refused, naming the code and no secret", async () => {
    const wrong: RotatorCall<TwilioSettings> = {
      ...call(),
      rotatorFields: { account_sid: twilio.accountSid, auth_token: "f".repeat(32) },
    };
    const error = await rotatorFailure(twilioRotator.mint(wrong, currentFields, TAG));
    expect(error).toMatchObject({ failure: "refused", message: "Twilio list keys failed: error 20003" });
    expect(twilio.keys).toHaveLength(1);
  });

  it("reports 429 (error 20429) and 5xx as unavailable, with nothing created", async () => {
    twilio.faults.next("create", () => twilioError(20429, "Too Many Requests", 429));
    twilio.faults.next("create", () => new HttpResponse("upstream connect error", { status: 503 }));
    for (let i = 0; i < 2; i++) {
      expect((await rotatorFailure(twilioRotator.mint(call(), currentFields, TAG))).failure).toBe(
        "unavailable",
      );
    }
    expect(twilio.keys).toHaveLength(1);
  });

  it("treats an unreadable create answer as retryable, and the retry cleans up the key it made (threat model case 32)", async () => {
    twilio.faults.next("create", "unreadable_answer");
    expect((await rotatorFailure(twilioRotator.mint(call(), currentFields, TAG))).failure).toBe(
      "unavailable",
    );
    const minted = await twilioRotator.mint(call(), currentFields, TAG);
    expect(twilio.keysNamed(NAME).map((key) => key.sid)).toEqual([minted.providerKeyId]);
  });

  it("reports a timeout as unavailable, and every request carries a timeout signal", async () => {
    const signals: (AbortSignal | null | undefined)[] = [];
    const timingOut: typeof fetch = async (_input, init) => {
      signals.push(init?.signal);
      throw new DOMException("The operation was aborted due to timeout", "TimeoutError");
    };
    const error = await rotatorFailure(twilioRotator.mint(call(timingOut), currentFields, TAG));
    expect(error).toMatchObject({ failure: "unavailable", message: "Twilio did not answer (timeout)" });
    expect(signals[0]).toBeInstanceOf(AbortSignal);
  });

  it("refuses a run tag that would overflow Twilio's 64-character FriendlyName", async () => {
    expect(
      (await rotatorFailure(twilioRotator.mint(call(), currentFields, `${TAG}${"x".repeat(20)}`))).failure,
    ).toBe("refused");
    expect(twilio.log).toHaveLength(0);
  });
});

describe("Twilio rotator: revoke", () => {
  it("deletes the key (DELETE /v1/Keys/{sid} → 204)", async () => {
    await twilioRotator.revoke(call(), current.sid);
    expect(twilio.keys).toEqual([]);
    expect(twilio.log.map((entry) => [entry.method, entry.url.href])).toEqual([
      ["DELETE", `https://iam.twilio.com/v1/Keys/${current.sid}`],
    ]);
  });

  it("counts a key that is already gone (404, error 20404) as revoked", async () => {
    await twilioRotator.revoke(call(), current.sid);
    await expect(twilioRotator.revoke(call(), current.sid)).resolves.toBeUndefined();
  });

  it("reports a 500 on delete as unavailable, and the retry completes it", async () => {
    twilio.faults.next("delete", () => twilioError(20500, "Internal Server Error", 500));
    expect((await rotatorFailure(twilioRotator.revoke(call(), current.sid))).failure).toBe("unavailable");
    expect(twilio.keys).toHaveLength(1);
    await twilioRotator.revoke(call(), current.sid);
    expect(twilio.keys).toEqual([]);
  });

  it("refuses anything that is not a key SID, sending nothing", async () => {
    for (const sid of ["AC0123456789abcdef0123456789abcdef", "SK../../Accounts", ""]) {
      expect((await rotatorFailure(twilioRotator.revoke(call(), sid))).failure).toBe("refused");
    }
    expect(twilio.log).toHaveLength(0);
  });

  it("reads the provider key id from a version's api_key_sid", () => {
    expect(twilioRotator.providerKeyIdOf(currentFields)).toBe(current.sid);
    expect(twilioRotator.providerKeyIdOf({ account_sid: twilio.accountSid })).toBeNull();
  });
});
