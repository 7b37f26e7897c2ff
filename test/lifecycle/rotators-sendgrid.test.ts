/**
 * The SendGrid API-key rotator against a stand-in of the v3 API Keys API that keeps the account's keys and
 * their scopes in memory: success, refusals (missing scope, the 100-key limit), outages and partial
 * successes, judged by the keys SendGrid ends up holding.
 */
import { HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { RotatorCall } from "../../src/lifecycle/rotators/provider-rotator";
import { type SendgridSettings, sendgridRotator } from "../../src/lifecycle/rotators/sendgrid";
import { network } from "../setup/network";
import { rotatorFailure } from "./stand-ins/rotator-failure";
import { ROTATOR_SCOPES, type SendgridKey, SendgridStandIn, sendgridError } from "./stand-ins/sendgrid";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

const TAG = "cred_0123456789abcdefghijkl-1767225600000";
const NAME = `keywarden:${TAG}`;
const MAIL_SCOPES = ["mail.send", "templates.read"];

let sendgrid: SendgridStandIn;
let current: SendgridKey;
let rotatorKey: SendgridKey;

function call(fetchImpl?: typeof fetch, key = rotatorKey): RotatorCall<SendgridSettings> {
  return {
    fetch: fetchImpl ?? ((input, init) => fetch(input, init)),
    rotatorFields: { api_key: key.key },
    settings: {},
  };
}

beforeEach(() => {
  sendgrid = new SendgridStandIn();
  current = sendgrid.addKey("transactional mail", MAIL_SCOPES);
  rotatorKey = sendgrid.addKey("keywarden rotation", ROTATOR_SCOPES);
  network.use(...sendgrid.handlers());
});

describe("SendGrid rotator: mint", () => {
  it("creates a key named after the run with exactly the current key's scopes (never Full Access)", async () => {
    const minted = await sendgridRotator.mint(call(), { api_key: current.key }, TAG);

    const [created] = sendgrid.keysNamed(NAME);
    expect(created?.scopes).toEqual(MAIL_SCOPES);
    expect(minted).toEqual({ fields: { api_key: created?.key }, providerKeyId: created?.id });
    expect(sendgridRotator.providerKeyIdOf(minted.fields)).toBe(created?.id);

    const create = sendgrid.log.find((entry) => entry.operation === "create");
    expect(create?.url.href).toBe("https://api.sendgrid.com/v3/api_keys");
    expect(create?.headers.authorization).toBe(`Bearer ${rotatorKey.key}`);
    expect(JSON.parse(create?.body ?? "")).toEqual({ name: NAME, scopes: MAIL_SCOPES });
    expect(sendgrid.log.map((entry) => [entry.method, entry.url.pathname + entry.url.search])).toEqual([
      ["GET", "/v3/api_keys?limit=100"],
      ["GET", `/v3/api_keys/${current.id}`],
      ["POST", "/v3/api_keys"],
    ]);
  });

  it("after the create answer was lost, the retry deletes the key named after the run and SendGrid ends with exactly one new key (threat model case 32)", async () => {
    sendgrid.faults.next("create", "lose_answer");
    expect((await rotatorFailure(sendgridRotator.mint(call(), { api_key: current.key }, TAG))).failure).toBe(
      "unavailable",
    );
    expect(sendgrid.keysNamed(NAME)).toHaveLength(1);

    const minted = await sendgridRotator.mint(call(), { api_key: current.key }, TAG);
    expect(sendgrid.keysNamed(NAME).map((key) => key.id)).toEqual([minted.providerKeyId]);
    expect(sendgrid.keys).toHaveLength(3);
  });

  it("reports a rotation key without the api_keys scopes (403) as refused, with nothing created", async () => {
    const mailOnly = sendgrid.addKey("mail only", ["mail.send"]);
    const error = await rotatorFailure(
      sendgridRotator.mint(call(undefined, mailOnly), { api_key: current.key }, TAG),
    );
    expect(error).toMatchObject({ failure: "refused", message: "SendGrid list keys failed: HTTP 403" });
    expect(sendgrid.keysNamed(NAME)).toEqual([]);
  });

  it("reports the account's 100-key limit (403) as refused", async () => {
    while (sendgrid.keys.length < 100) sendgrid.addKey("filler", ["mail.send"]);
    const error = await rotatorFailure(sendgridRotator.mint(call(), { api_key: current.key }, TAG));
    expect(error).toMatchObject({ failure: "refused", message: "SendGrid create key failed: HTTP 403" });
    expect(sendgrid.keys).toHaveLength(100);
  });

  it("refuses when the current key no longer exists at SendGrid (404 on its scopes)", async () => {
    const gone = { api_key: current.key };
    sendgrid.keys.splice(sendgrid.keys.indexOf(current), 1);
    expect((await rotatorFailure(sendgridRotator.mint(call(), gone, TAG))).failure).toBe("refused");
    expect(sendgrid.keysNamed(NAME)).toEqual([]);
  });

  it("refuses to rotate the rotation credential's own key", async () => {
    expect(
      (await rotatorFailure(sendgridRotator.mint(call(), { api_key: rotatorKey.key }, TAG))).failure,
    ).toBe("refused");
    expect(sendgrid.log).toHaveLength(0);
  });

  it("reports 429 and 5xx as unavailable, with nothing created", async () => {
    sendgrid.faults.next("create", () => sendgridError("too many requests", 429));
    sendgrid.faults.next("read", () => new HttpResponse("bad gateway", { status: 502 }));
    for (let i = 0; i < 2; i++) {
      expect(
        (await rotatorFailure(sendgridRotator.mint(call(), { api_key: current.key }, TAG))).failure,
      ).toBe("unavailable");
    }
    expect(sendgrid.keysNamed(NAME)).toEqual([]);
  });

  it("reports a timeout as unavailable, and every request carries a timeout signal", async () => {
    const signals: (AbortSignal | null | undefined)[] = [];
    const timingOut: typeof fetch = async (_input, init) => {
      signals.push(init?.signal);
      throw new DOMException("The operation was aborted due to timeout", "TimeoutError");
    };
    const error = await rotatorFailure(sendgridRotator.mint(call(timingOut), { api_key: current.key }, TAG));
    expect(error).toMatchObject({ failure: "unavailable", message: "SendGrid did not answer (timeout)" });
    expect(signals[0]).toBeInstanceOf(AbortSignal);
  });

  it("does not follow a redirect: refused, and its target is never called (threat model case 31)", async () => {
    let followed = 0;
    sendgrid.faults.next(
      "list",
      () => new HttpResponse(null, { status: 302, headers: { location: "https://collector.example/keys" } }),
    );
    network.use(
      http.all("https://collector.example/*", () => {
        followed++;
        return HttpResponse.json({ result: [] });
      }),
    );
    const error = await rotatorFailure(sendgridRotator.mint(call(), { api_key: current.key }, TAG));
    expect(error).toMatchObject({
      failure: "refused",
      message: "SendGrid answered with a redirect, which is never followed",
    });
    expect(followed).toBe(0);
  });

  it("never puts a key in an error message, whatever the provider answers", async () => {
    sendgrid.faults.next("create", () => sendgridError(`key ${current.key} is invalid`, 400, "scopes"));
    const error = await rotatorFailure(sendgridRotator.mint(call(), { api_key: current.key }, TAG));
    expect(error.message).toBe("SendGrid create key failed: HTTP 400");
    expect(error.message).not.toContain(current.key);
    expect(error.message).not.toContain(rotatorKey.key);
  });
});

describe("SendGrid rotator: revoke", () => {
  it("deletes the key (DELETE /v3/api_keys/{id} → 204) and counts an absent one (404) as revoked", async () => {
    await sendgridRotator.revoke(call(), current.id);
    expect(sendgrid.keys.map((key) => key.id)).toEqual([rotatorKey.id]);
    await expect(sendgridRotator.revoke(call(), current.id)).resolves.toBeUndefined();
    expect(sendgrid.log.map((entry) => [entry.method, entry.url.pathname])).toEqual([
      ["DELETE", `/v3/api_keys/${current.id}`],
      ["DELETE", `/v3/api_keys/${current.id}`],
    ]);
  });

  it("reports a 503 on delete as unavailable, and the retry completes it", async () => {
    sendgrid.faults.next("delete", () => new HttpResponse(null, { status: 503 }));
    expect((await rotatorFailure(sendgridRotator.revoke(call(), current.id))).failure).toBe("unavailable");
    await sendgridRotator.revoke(call(), current.id);
    expect(sendgrid.keys.map((key) => key.id)).toEqual([rotatorKey.id]);
  });

  it("refuses to revoke its own key or an id that is not one, sending nothing", async () => {
    for (const id of [rotatorKey.id, "../scopes", ""]) {
      expect((await rotatorFailure(sendgridRotator.revoke(call(), id))).failure).toBe("refused");
    }
    expect(sendgrid.log).toHaveLength(0);
  });

  it("reads the key id from the SG.<id>.<secret> value", () => {
    expect(sendgridRotator.providerKeyIdOf({ api_key: current.key })).toBe(current.id);
    expect(sendgridRotator.providerKeyIdOf({ api_key: "not-a-key" })).toBeNull();
  });
});
