/**
 * The Vault KV import's outbound calls follow the rule every outbound call follows (threat model case 31):
 * https on 443 or 8443 to a public host only, every literal spelling of a loopback, private, link-local or
 * metadata address refused before any request leaves, no path escaping the mount, no redirect followed, a
 * timeout and a size cap.
 */
import { HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { randomBase62 } from "../../src/crypto/random";
import { VaultKvClient, VaultKvError } from "../../src/portability/vault-kv-client";
import { stripeKey } from "../credentials/samples";
import { callJson, createTenant, type TestTenant } from "../helpers/api";
import { snapshotTenantRows } from "../helpers/db";
import { network } from "../setup/network";
import { VaultKvStandIn } from "./vault-kv-stand-in";

beforeAll(() => network.enable());
afterAll(() => network.disable());

/** Every request that leaves the Worker, whatever its destination; a refused address must add none. */
let outbound: string[] = [];
beforeEach(() => {
  outbound = [];
  network.use(
    http.all("*", ({ request }) => {
      outbound.push(request.url);
      return HttpResponse.error();
    }),
  );
});
afterEach(() => network.resetHandlers());

type Problem = { status: number; code: string; detail: string; errors?: { path: string; message: string }[] };

const TOKEN = `hvs.CAES${randomBase62(40)}`;
const PATHS = [{ path: "payments/stripe", service: "stripe", environment: "development" }];

function importFrom(tenant: TestTenant, body: Record<string, unknown>) {
  return callJson<Problem>("POST", "/api/v1/import/vault", {
    key: tenant.adminKey,
    body: { token: TOKEN, mount: "secret", paths: PATHS, ...body },
  });
}

describe("Vault KV import outbound calls (threat model case 31)", () => {
  let tenant: TestTenant;
  beforeAll(async () => {
    tenant = await createTenant();
  });

  it.each([
    ["plain http", "http://vault.example.com"],
    ["Vault's default port 8200", "https://vault.example.com:8200"],
    ["loopback", "https://127.0.0.1"],
    ["loopback in decimal", "https://2130706433"],
    ["loopback in octal", "https://0177.0.0.1"],
    ["loopback in hex", "https://0x7f.0.0.1"],
    ["IPv6 loopback", "https://[::1]"],
    ["IPv4-mapped IPv6 loopback", "https://[::ffff:127.0.0.1]"],
    ["a private network", "https://10.0.0.5:8443"],
    ["cloud metadata", "https://169.254.169.254"],
    ["IPv6 metadata", "https://[fd00:ec2::254]"],
    ["localhost", "https://localhost"],
    ["an internal name", "https://vault.internal"],
    ["credentials in the URL", "https://user:pass@vault.example.com"],
    ["a path after the origin", "https://vault.example.com/v1/secret"],
    ["not a URL", "vault.example.com"],
  ])("refuses %s as the Vault address before any request, with nothing written", async (_, address) => {
    const before = await snapshotTenantRows(tenant.id);
    const response = await importFrom(tenant, { address });
    expect(response.status).toBe(422);
    expect(response.body.code).toBe("VALIDATION_FAILED");
    expect(response.body.errors?.[0]?.path).toBe("address");
    expect(JSON.stringify(response.body)).not.toContain(TOKEN);
    expect(outbound).toEqual([]);
    expect(await snapshotTenantRows(tenant.id)).toBe(before);
  });

  it.each([
    [
      "a path climbing out of the mount",
      { paths: [{ ...PATHS[0], path: "../../sys/seal-status" }] },
      "paths.0.path",
    ],
    ["a dot segment in the middle", { paths: [{ ...PATHS[0], path: "a/./b" }] }, "paths.0.path"],
    ["a leading slash", { paths: [{ ...PATHS[0], path: "/sys/health" }] }, "paths.0.path"],
    ["a mount climbing out", { mount: "secret/.." }, "mount"],
    ["a token that could split a header", { token: "hvs.abc\r\nX-Injected: 1" }, "token"],
  ])("refuses %s before any request", async (_, body, path) => {
    const response = await importFrom(tenant, { address: "https://vault.example.com", ...body });
    expect(response.status).toBe(422);
    expect(response.body.errors?.map((error) => error.path)).toContain(path);
    expect(outbound).toEqual([]);
  });

  it("answers a redirect from Vault with 502 and never follows it, even to a metadata address", async () => {
    const addr = "https://vault-redirect.example.com:8443";
    const vault = new VaultKvStandIn({ addr, token: TOKEN });
    vault.put("payments/stripe", { secret_key: stripeKey() });
    vault.faults.next(
      "read",
      () =>
        new HttpResponse(null, {
          status: 307,
          headers: { location: "https://169.254.169.254/latest/meta-data/" },
        }),
    );
    network.use(...vault.handlers);
    const before = await snapshotTenantRows(tenant.id);

    const response = await importFrom(tenant, { address: addr });
    expect(response.status).toBe(502);
    expect(response.body.detail).toContain("a redirect, which is never followed");
    expect(vault.count("read")).toBe(1);
    expect(outbound).toEqual([]);
    expect(await snapshotTenantRows(tenant.id)).toBe(before);
  });

  it("percent-encodes each path segment, so a secret's name cannot change the request's route", async () => {
    const addr = "https://vault-encoding.example.com";
    const vault = new VaultKvStandIn({ addr, token: TOKEN });
    vault.put("team a/stripe?list=true#x", { secret_key: stripeKey() });
    network.use(...vault.handlers);
    const response = await importFrom(tenant, {
      address: addr,
      dry_run: true,
      paths: [{ ...PATHS[0], path: "team a/stripe?list=true#x" }],
    });
    expect(response.status).toBe(200);
    expect(vault.log.map((entry) => `${entry.url.pathname}${entry.url.search}`)).toEqual([
      "/v1/secret/data/team%20a/stripe%3Flist%3Dtrue%23x",
    ]);
  });

  it("gives up on a Vault that does not answer within the timeout", async () => {
    const hanging: typeof fetch = (_input, init) =>
      new Promise((_, reject) => {
        init?.signal?.addEventListener("abort", () => reject(init.signal?.reason));
      });
    const client = new VaultKvClient(
      { address: "https://vault.example.com", token: TOKEN, mount: "secret" },
      hanging,
      20,
    );
    const error = await client.read("payments/stripe").catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(VaultKvError);
    expect(error).toMatchObject({ failure: "unavailable", message: "Vault did not answer (timeout)" });
  });
});
