import { describe, expect, it } from "vitest";
import { createKeywardenClient, RETRY_DEFAULTS, type RetryOptions, retryAfterMs } from "../src";

const NOW = Date.UTC(2026, 10, 30, 12, 0, 0);
const problem = (status: number, code: string, headers: Record<string, string> = {}) =>
  new Response(
    JSON.stringify({ type: "about:blank", title: code, status, detail: code, code, request_id: "r" }),
    {
      status,
      headers: { "content-type": "application/problem+json", ...headers },
    },
  );
const keyList = () => Response.json({ items: [], next_cursor: null });

/** A fetch that answers from a script, records every request (with its body) and never touches the network. */
function scripted(...answers: (Response | Error)[]) {
  const seen: { method: string; url: string; body: string }[] = [];
  const fetch = async (request: Request) => {
    seen.push({ method: request.method, url: request.url, body: await request.text() });
    const next = answers.shift();
    if (!next) throw new Error("the script ran out of answers");
    if (next instanceof Error) throw next;
    return next;
  };
  return { fetch, seen };
}

function clientWith(answers: (Response | Error)[], retry: RetryOptions = {}) {
  const { fetch, seen } = scripted(...answers);
  const waits: number[] = [];
  const client = createKeywardenClient({
    baseUrl: "https://keywarden.example",
    key: "kw_test_key",
    fetch,
    retry: {
      sleep: async (ms) => {
        waits.push(ms);
      },
      now: () => NOW,
      random: () => 0.5,
      ...retry,
    },
  });
  return { client, seen, waits };
}

describe("Retry-After parsing (RFC 9110 §10.2.3)", () => {
  it("reads delay-seconds and an HTTP-date against the given clock, and ignores anything else", () => {
    expect(retryAfterMs("7", NOW)).toBe(7_000);
    expect(retryAfterMs(" 0 ", NOW)).toBe(0);
    expect(retryAfterMs(new Date(NOW + 42_000).toUTCString(), NOW)).toBe(42_000);
    expect(retryAfterMs(new Date(NOW - 5_000).toUTCString(), NOW)).toBe(0);
    for (const junk of [null, "", "-3", "1.5", "soon", "12abc"])
      expect(retryAfterMs(junk, NOW)).toBeUndefined();
  });
});

describe("the client's retries", () => {
  it("waits the Retry-After seconds of a 429, then returns the retried answer", async () => {
    const { client, seen, waits } = clientWith([
      problem(429, "RATE_LIMITED", { "retry-after": "2" }),
      keyList(),
    ]);
    const { data, response } = await client.GET("/api/v1/keys");
    expect(response.status).toBe(200);
    expect(data).toEqual({ items: [], next_cursor: null });
    expect(waits).toEqual([2_000]);
    expect(seen).toHaveLength(2);
  });

  it("waits until a Retry-After HTTP-date, measured with the injected clock", async () => {
    const at = new Date(NOW + 3_000).toUTCString();
    const { client, waits } = clientWith([problem(429, "RATE_LIMITED", { "retry-after": at }), keyList()]);
    expect((await client.GET("/api/v1/keys")).response.status).toBe(200);
    expect(waits).toEqual([3_000]);
  });

  it("backs off exponentially with jitter on a 503 without Retry-After", async () => {
    const { client, waits } = clientWith([problem(503, "SEALED"), problem(503, "SEALED"), keyList()], {
      baseDelayMs: 100,
      random: () => 0.5,
    });
    expect((await client.GET("/api/v1/keys")).response.status).toBe(200);
    // Full jitter: random() x min(max, base x 2^attempt).
    expect(waits).toEqual([100, 200]);
  });

  it("gives up after the configured attempts and returns the last problem, typed", async () => {
    const { client, seen, waits } = clientWith(
      [problem(503, "SEALED"), problem(503, "SEALED"), problem(503, "SEALED"), keyList()],
      { attempts: 3 },
    );
    const { data, error, response } = await client.GET("/api/v1/keys");
    expect(data).toBeUndefined();
    expect(response.status).toBe(503);
    expect(error?.code).toBe("SEALED");
    expect(seen).toHaveLength(3);
    expect(waits).toHaveLength(2);
    expect(RETRY_DEFAULTS.attempts).toBe(3);
  });

  it("does not wait for a Retry-After longer than maxDelayMs: the 429 is returned at once", async () => {
    const { client, seen, waits } = clientWith(
      [problem(429, "RATE_LIMITED", { "retry-after": "3600" }), keyList()],
      { maxDelayMs: 5_000 },
    );
    const { error, response } = await client.GET("/api/v1/keys");
    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe("3600");
    expect(error?.code).toBe("RATE_LIMITED");
    expect(seen).toHaveLength(1);
    expect(waits).toEqual([]);
  });

  it("resends a POST on 429 with the same body, because the server did not act", async () => {
    const created = { id: "key_1", key: "kw_test_new" };
    const { client, seen } = clientWith([
      problem(429, "RATE_LIMITED", { "retry-after": "1" }),
      Response.json(created, { status: 201 }),
    ]);
    const { data } = await client.POST("/api/v1/keys", { body: { name: "orders" } });
    expect(data).toMatchObject(created);
    expect(seen.map((s) => [s.method, s.body])).toEqual([
      ["POST", '{"name":"orders"}'],
      ["POST", '{"name":"orders"}'],
    ]);
  });

  it("never resends a POST after a lost connection or a 502, where the server may have acted", async () => {
    const lost = clientWith([new TypeError("network connection lost"), keyList()]);
    await expect(lost.client.POST("/api/v1/keys", { body: { name: "orders" } })).rejects.toThrow(
      "network connection lost",
    );
    expect(lost.seen).toHaveLength(1);

    const gateway = clientWith([problem(502, "UPSTREAM_UNAVAILABLE"), keyList()]);
    expect((await gateway.client.POST("/api/v1/keys", { body: { name: "orders" } })).response.status).toBe(
      502,
    );
    expect(gateway.seen).toHaveLength(1);
  });

  it("retries an idempotent GET after a lost connection and a 504", async () => {
    const { client, seen } = clientWith([
      new TypeError("network connection lost"),
      problem(504, "INTERNAL"),
      keyList(),
    ]);
    expect((await client.GET("/api/v1/keys")).response.status).toBe(200);
    expect(seen.map((s) => s.method)).toEqual(["GET", "GET", "GET"]);
  });

  it("sends each request once with retry: false, and every request carries the client's key", async () => {
    const { fetch, seen } = scripted(problem(429, "RATE_LIMITED", { "retry-after": "1" }), keyList());
    const headers: (string | null)[] = [];
    const client = createKeywardenClient({
      baseUrl: "https://keywarden.example/",
      key: "kw_test_key",
      retry: false,
      fetch: (request) => {
        headers.push(request.headers.get("authorization"));
        return fetch(request);
      },
    });
    expect((await client.GET("/api/v1/keys")).response.status).toBe(429);
    expect(seen.map((s) => s.url)).toEqual(["https://keywarden.example/api/v1/keys"]);
    expect(headers).toEqual(["Bearer kw_test_key"]);
  });
});
