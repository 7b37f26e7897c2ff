import { afterEach, describe, expect, it, vi } from "vitest";
import { bytesEqual, secretsEqual } from "../../src/crypto/constant-time";

/** threat model case 24: secret comparisons are constant-time (fixed-length digests + timingSafeEqual). */

afterEach(() => vi.restoreAllMocks());

const TOKEN = "test-bootstrap-token-0123456789abcdef";

describe("secretsEqual (threat model case 24)", () => {
  it("returns true for equal strings and false for unequal, different-length and empty ones", async () => {
    const cases: [string, string, boolean][] = [
      [TOKEN, TOKEN, true],
      [TOKEN, `${TOKEN}`.slice(0), true],
      ["", "", true],
      ["é", "é", true],
      [TOKEN, `${TOKEN.slice(0, -1)}g`, false], // last character differs
      [TOKEN, `X${TOKEN.slice(1)}`, false], // first character differs
      [TOKEN, TOKEN.slice(0, -1), false], // proper prefix
      [TOKEN, `${TOKEN}0`, false], // extension
      [TOKEN, "", false],
      ["", TOKEN, false],
      ["a", "A", false],
      ["abc\u0000", "abc", false],
      ["\u00e9", "e\u0301", false], // NFC vs NFD: no normalisation
      [TOKEN, TOKEN.repeat(100), false],
    ];
    for (const [a, b, expected] of cases) {
      expect(await secretsEqual(a, b), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`).toBe(expected);
      expect(await secretsEqual(b, a), `${JSON.stringify(b)} vs ${JSON.stringify(a)}`).toBe(expected);
    }
  });

  it("tells apart strings that differ only in lone surrogates or U+FFFD", async () => {
    // UTF-8 encoding replaces every lone surrogate with U+FFFD, so hashing the UTF-8 bytes makes
    // these distinct strings compare equal.
    const cases: [string, string][] = [
      ["\ud800", "\udc00"],
      ["key\ud800", "key\ufffd"],
      ["\udfff\ud800", "\ufffd\ufffd"],
    ];
    for (const [a, b] of cases) {
      expect(await secretsEqual(a, b), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`).toBe(false);
    }
    expect(await secretsEqual("\ud800", "\ud800")).toBe(true);
  });

  it("compares fixed-length SHA-256 digests with crypto.subtle.timingSafeEqual, whatever the input lengths", async () => {
    const timingSafeEqual = vi.spyOn(crypto.subtle, "timingSafeEqual");
    const digest = vi.spyOn(crypto.subtle, "digest");
    const pairs: [string, string][] = [
      ["", TOKEN.repeat(50)],
      ["short", TOKEN],
      [TOKEN, TOKEN],
      ["", ""],
    ];
    for (const [a, b] of pairs) {
      timingSafeEqual.mockClear();
      digest.mockClear();
      await secretsEqual(a, b);
      // Exactly one comparison, never short-circuited on length, over two 32-byte digests.
      expect(timingSafeEqual).toHaveBeenCalledTimes(1);
      const [left, right] = timingSafeEqual.mock.calls[0] as [
        ArrayBuffer | ArrayBufferView,
        ArrayBuffer | ArrayBufferView,
      ];
      expect(left.byteLength).toBe(32);
      expect(right.byteLength).toBe(32);
      expect(digest).toHaveBeenCalledTimes(2);
      for (const call of digest.mock.calls) {
        const algorithm = call[0];
        expect(typeof algorithm === "string" ? algorithm : algorithm.name).toBe("SHA-256");
      }
    }
  });
});

describe("bytesEqual", () => {
  it("compares equal-length byte strings with timingSafeEqual and rejects different lengths", () => {
    const timingSafeEqual = vi.spyOn(crypto.subtle, "timingSafeEqual");
    const a = new Uint8Array([1, 2, 3, 4]);
    expect(bytesEqual(a, new Uint8Array([1, 2, 3, 4]))).toBe(true);
    expect(bytesEqual(a, new Uint8Array([1, 2, 3, 5]))).toBe(false);
    expect(bytesEqual(a.buffer, new Uint8Array([1, 2, 3, 4]).buffer)).toBe(true);
    expect(timingSafeEqual).toHaveBeenCalledTimes(3);
    expect(bytesEqual(a, new Uint8Array([1, 2, 3]))).toBe(false);
    expect(bytesEqual(new Uint8Array(0), new Uint8Array(0))).toBe(true);
  });
});

describe("the bootstrap token check", () => {
  it("compares the bootstrap token in constant time and answers a near-miss token with 401, creating nothing", async () => {
    const { env } = await import("cloudflare:workers");
    const { call } = await import("../helpers/api");
    const { rowCounts } = await import("./support");
    const before = await rowCounts();
    const timingSafeEqual = vi.spyOn(crypto.subtle, "timingSafeEqual");
    const token = env.BOOTSTRAP_TOKEN;
    const nearMisses = [
      `${token.slice(0, -1)}${token.endsWith("x") ? "y" : "x"}`,
      token.slice(0, -1),
      `${token}x`,
    ];
    for (const presented of nearMisses) {
      timingSafeEqual.mockClear();
      const response = await call("POST", "/api/v1/tenants", { key: presented, body: { name: "nope" } });
      expect(response.status).toBe(401);
      expect(response.headers.get("content-type")).toContain("application/problem+json");
      expect(await response.text()).not.toContain(token);
      expect(timingSafeEqual).toHaveBeenCalledTimes(1);
      const [left, right] = timingSafeEqual.mock.calls[0] as [
        ArrayBuffer | ArrayBufferView,
        ArrayBuffer | ArrayBufferView,
      ];
      expect([left.byteLength, right.byteLength]).toEqual([32, 32]);
    }
    expect(await rowCounts()).toEqual(before);
  });
});
