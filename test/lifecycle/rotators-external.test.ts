/**
 * The external rotation call against a stand-in of a tenant's endpoint that verifies Standard Webhooks
 * signatures on its own (not with Keywarden's signer) and dedupes by webhook-id: the signed steps, the
 * create answer held to the catalogue, failure mapping, and the SSRF guard.
 */
import { HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { findService } from "../../src/catalog";
import type { ServiceDefinition } from "../../src/catalog/types";
import {
  callExternalRotator,
  EXTERNAL_ROTATION_STEPS,
  type ExternalRotatorCall,
} from "../../src/lifecycle/rotators/external";
import { MAX_ROTATOR_BODY_BYTES } from "../../src/lifecycle/rotators/provider-http";
import { newSigningSecret } from "../../src/monitoring/standard-webhooks";
import { network } from "../setup/network";
import { ExternalEndpointStandIn, verifyStandardWebhook } from "./stand-ins/external";
import { rotatorFailure } from "./stand-ins/rotator-failure";

beforeAll(() => network.enable());
afterEach(() => {
  network.resetHandlers();
  vi.restoreAllMocks();
});
afterAll(() => network.disable());

const URL_ = "https://rotate.acme.example/keywarden";
const RUN = "cred_0123456789abcdefghijkl-1767225600000";
const ENV = { ALLOW_LOOPBACK_WEBHOOKS: undefined };

function openaiService(): ServiceDefinition {
  const service = findService("openai");
  if (!service) throw new Error("openai is not in the catalogue");
  return service;
}

let endpoint: ExternalEndpointStandIn;

function step(
  step: ExternalRotatorCall["step"],
  extra: Partial<ExternalRotatorCall> = {},
): ExternalRotatorCall {
  return {
    url: URL_,
    secret: endpoint.secret,
    step,
    credentialId: "cred_0123456789abcdefghijkl",
    runId: RUN,
    version: 4,
    ...extra,
  };
}

function create(extra: Partial<ExternalRotatorCall> = {}) {
  return callExternalRotator(ENV, { ...step("create", extra), step: "create", service: openaiService() });
}

beforeEach(() => {
  endpoint = new ExternalEndpointStandIn(URL_, newSigningSecret(), (n) => ({
    api_key: `sk-proj-${"Ab3dE".repeat(8)}${n}`,
  }));
  network.use(...endpoint.handlers());
});

describe("external rotation: the signed step calls", () => {
  it("creates through the endpoint: a Standard Webhooks-signed POST the endpoint verifies with its secret", async () => {
    const minted = await create();
    expect(minted).toEqual({ fields: endpoint.live.get("ext-key-1"), provider_key_id: "ext-key-1" });

    const [request] = endpoint.log;
    if (!request) throw new Error("the endpoint received nothing");
    expect(await verifyStandardWebhook(endpoint.secret, request)).toBe(true);
    expect(await verifyStandardWebhook(newSigningSecret(), request)).toBe(false);
    expect(request.headers["webhook-id"]).toBe(`${RUN}:create`);
    expect(request.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(request.body)).toEqual({
      type: "rotation.step",
      step: "create",
      credential_id: "cred_0123456789abcdefghijkl",
      run_id: RUN,
      version: 4,
      provider_key_id: null,
    });
  });

  it("gives every step its own webhook-id and passes the provider key id on", async () => {
    const { provider_key_id } = await create();
    for (const name of ["test", "finish", "revoke"] as const) {
      expect(
        await callExternalRotator(ENV, { ...step(name, { providerKeyId: provider_key_id }), step: name }),
      ).toBeNull();
    }
    expect(endpoint.calls.map((entry) => [entry.id, entry.body.provider_key_id])).toEqual([
      [`${RUN}:create`, null],
      [`${RUN}:test`, "ext-key-1"],
      [`${RUN}:finish`, "ext-key-1"],
      [`${RUN}:revoke`, "ext-key-1"],
    ]);
    expect(endpoint.live.size).toBe(0);
    expect(EXTERNAL_ROTATION_STEPS).toEqual(["create", "test", "finish", "revoke"]);
  });

  it("repeats a retried step with the same webhook-id and body, so the endpoint mints once (threat model case 32)", async () => {
    const first = await create();
    const again = await create();
    expect(again).toEqual(first);
    expect(endpoint.mintCount).toBe(1);
    expect(endpoint.log).toHaveLength(2);
    expect(endpoint.log[1]?.headers["webhook-id"]).toBe(endpoint.log[0]?.headers["webhook-id"]);
    expect(endpoint.log[1]?.body).toBe(endpoint.log[0]?.body);
  });
});

describe("external rotation: the create answer", () => {
  it("refuses field names the catalogue service does not have, without echoing them", async () => {
    endpoint.override = () => HttpResponse.json({ fields: { api_key: "sk-proj-x", secret_key: "zzz-leak" } });
    const error = await rotatorFailure(create());
    expect(error.failure).toBe("refused");
    expect(error.message).toBe("the rotation endpoint answered 1 field name(s) that openai does not have");
  });

  it("refuses an answer with no secret field of the service", async () => {
    endpoint.override = () =>
      HttpResponse.json({ fields: { organization_id: "org-abcdefghijklmnopqrstuvwx" } });
    expect((await rotatorFailure(create())).failure).toBe("refused");
  });

  it("refuses an answer that is not { fields, provider_key_id? }", async () => {
    for (const body of [{ api_key: "sk-proj-x" }, { fields: { api_key: 42 } }, { fields: { api_key: "" } }]) {
      endpoint.override = () => HttpResponse.json(body);
      expect((await rotatorFailure(create())).failure).toBe("refused");
    }
    endpoint.override = () => new HttpResponse("ok", { status: 200 });
    expect((await rotatorFailure(create())).failure).toBe("refused");
  });

  it("reads no more than the size cap of an answer (threat model case 31)", async () => {
    const huge = `{"fields":{"api_key":"${"a".repeat(MAX_ROTATOR_BODY_BYTES)}"}}`;
    endpoint.override = () => new HttpResponse(huge, { headers: { "content-type": "application/json" } });
    expect((await rotatorFailure(create())).failure).toBe("refused");
  });
});

describe("external rotation: failures", () => {
  it("maps a 4xx to refused and 429 or a 5xx to unavailable, never quoting the body", async () => {
    const cases = [
      [400, "refused"],
      [403, "refused"],
      [404, "refused"],
      [429, "unavailable"],
      [500, "unavailable"],
      [503, "unavailable"],
    ] as const;
    for (const [status, expected] of cases) {
      endpoint.override = () => HttpResponse.json({ leaked: "sk-proj-should-not-appear" }, { status });
      const error = await rotatorFailure(callExternalRotator(ENV, { ...step("finish"), step: "finish" }));
      expect(error.failure).toBe(expected);
      expect(error.message).toBe(`the rotation endpoint failed the finish step: HTTP ${status}`);
    }
  });

  it("reports no answer (network error) as unavailable", async () => {
    endpoint.override = () => HttpResponse.error();
    const error = await rotatorFailure(callExternalRotator(ENV, { ...step("test"), step: "test" }));
    expect(error).toMatchObject({
      failure: "unavailable",
      message: "the rotation endpoint did not answer the test step",
    });
  });

  it("reports a timeout as unavailable, the request having carried a timeout signal", async () => {
    const spy = vi.spyOn(globalThis, "fetch").mockImplementation(async (_input, init) => {
      expect(init?.signal).toBeInstanceOf(AbortSignal);
      throw new DOMException("The operation was aborted due to timeout", "TimeoutError");
    });
    expect(
      (await rotatorFailure(callExternalRotator(ENV, { ...step("revoke"), step: "revoke" }))).failure,
    ).toBe("unavailable");
    expect(spy).toHaveBeenCalledOnce();
  });

  it("does not follow a redirect: refused, and its target is never called (threat model case 31)", async () => {
    let followed = 0;
    endpoint.override = () =>
      new HttpResponse(null, { status: 307, headers: { location: "https://collector.example/steal" } });
    network.use(
      http.all("https://collector.example/*", () => {
        followed++;
        return HttpResponse.json({ fields: { api_key: "sk-proj-x" } });
      }),
    );
    expect((await rotatorFailure(create())).failure).toBe("refused");
    expect(followed).toBe(0);
  });
});

describe("external rotation: the SSRF guard (threat model case 31)", () => {
  const refused = [
    ["plain http", "http://rotate.acme.example/keywarden"],
    ["a port other than 443 or 8443", "https://rotate.acme.example:8080/keywarden"],
    ["a private address", "https://10.0.0.1/rotate"],
    ["loopback", "https://127.0.0.1/rotate"],
    ["loopback in decimal", "https://2130706433/rotate"],
    ["loopback in hex", "https://0x7f000001/rotate"],
    ["loopback in octal", "https://0177.0.0.1/rotate"],
    ["the metadata address", "https://169.254.169.254/latest/meta-data"],
    ["IPv6 loopback", "https://[::1]/rotate"],
    ["IPv4-mapped IPv6 loopback", "https://[::ffff:127.0.0.1]/rotate"],
    ["localhost", "https://localhost/rotate"],
    ["credentials in the URL", "https://user:pass@rotate.acme.example/keywarden"],
  ] as const;

  it.each(refused)("refuses %s and sends nothing", async (_what, url) => {
    const spy = vi.spyOn(globalThis, "fetch");
    const error = await rotatorFailure(create({ url }));
    expect(error.failure).toBe("refused");
    expect(spy).not.toHaveBeenCalled();
  });

  it("accepts https on 8443 to a public host", async () => {
    const onPort = new ExternalEndpointStandIn(
      "https://rotate.acme.example:8443/keywarden",
      endpoint.secret,
      () => ({
        api_key: `sk-proj-${"Zz9yX".repeat(8)}`,
      }),
    );
    network.use(...onPort.handlers());
    await expect(create({ url: onPort.url })).resolves.toMatchObject({ provider_key_id: "ext-key-1" });
  });
});
