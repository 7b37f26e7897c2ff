import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import {
  createWrappedDek,
  decryptBytes,
  decryptText,
  deriveKek,
  encryptBytes,
  encryptText,
  type FieldContext,
  IntegrityError,
  importMasterKey,
  parseBlob,
} from "../../src/crypto/envelope";
import {
  b64,
  casesNotRejectedWithIntegrityError,
  expectIntegrityError,
  flipBit,
  hex,
  randomBytes,
  unb64,
} from "./support";

/**
 * threat model case 4 (tampered, truncated, extended blobs) and case 5 (IV uniqueness), at the pure
 * envelope layer. The resolver used here hands back the one real DEK for ANY version the header names:
 * the worst case, so a rewritten key-version field must be caught by the AAD, not by a lucky lookup.
 */

const context: FieldContext = { tenantId: "ten_tamper", recordId: "cred_tamper", field: "secret" };
const KEY_VERSION = 1;
const HEADER_BYTES = 1 + 4 + 12;
const TAG_BYTES = 16;
const B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

let dek: CryptoKey;
const anyVersion = async (_version: number) => dek;

beforeAll(async () => {
  const kek = await deriveKek(await importMasterKey(env.MASTER_KEY), 1);
  ({ dek } = await createWrappedDek(kek, context.tenantId, KEY_VERSION, 1));
});

async function sealedBlob(size: number): Promise<{ plaintext: Uint8Array; blob: string; bytes: Uint8Array }> {
  const plaintext = randomBytes(size);
  const blob = await encryptBytes(dek, KEY_VERSION, context, plaintext);
  const bytes = unb64(blob);
  // Layout and positive control: without these, every "rejects" below could pass vacuously.
  expect(bytes.length).toBe(HEADER_BYTES + size + TAG_BYTES);
  expect(await decryptBytes(anyVersion, context, blob)).toEqual(plaintext);
  return { plaintext, blob, bytes };
}

function decrypt(blob: string) {
  return decryptBytes(anyVersion, context, blob);
}

describe("tampered blobs fail closed with IntegrityError (threat model case 4)", () => {
  it.each([0, 1, 32, 4096])(
    "rejects every single-bit flip of the blob of a %i-byte plaintext with IntegrityError",
    async (size) => {
      const { bytes } = await sealedBlob(size);
      const bits = Array.from({ length: bytes.length * 8 }, (_, bit) => bit);
      const escaped = await casesNotRejectedWithIntegrityError(
        bits,
        (bit) => decrypt(flipBit(bytes, bit)),
        (bit) => `bit ${bit} (byte ${bit >> 3})`,
      );
      expect(bits.length).toBe((HEADER_BYTES + size + TAG_BYTES) * 8);
      expect(escaped).toEqual([]);
    },
  );

  it.each([0, 1, 32, 4096])(
    "rejects every truncation of the blob of a %i-byte plaintext, by bytes and by base64 characters",
    async (size) => {
      const { bytes, blob } = await sealedBlob(size);
      const byteLengths = Array.from({ length: bytes.length }, (_, length) => length);
      expect(
        await casesNotRejectedWithIntegrityError(
          byteLengths,
          (length) => decrypt(b64(bytes.subarray(0, length))),
          (length) => `first ${length} bytes`,
        ),
      ).toEqual([]);

      const charLengths = Array.from({ length: blob.length }, (_, length) => length);
      expect(
        await casesNotRejectedWithIntegrityError(
          charLengths,
          (length) => decrypt(blob.slice(0, length)),
          (length) => `first ${length} base64 characters`,
        ),
      ).toEqual([]);
    },
  );

  it.each([0, 1, 32, 4096])(
    "rejects 1, 16 and 1,000 appended bytes (random, zero and a repeated tag) on a %i-byte plaintext's blob",
    async (size) => {
      const { bytes } = await sealedBlob(size);
      const extend = (extra: Uint8Array) => {
        const out = new Uint8Array(bytes.length + extra.length);
        out.set(bytes);
        out.set(extra, bytes.length);
        return b64(out);
      };
      const tag = bytes.subarray(bytes.length - TAG_BYTES);
      const cases = [
        { label: "1 random byte", blob: extend(randomBytes(1)) },
        { label: "1 zero byte", blob: extend(new Uint8Array(1)) },
        { label: "16 random bytes", blob: extend(randomBytes(16)) },
        { label: "16 zero bytes", blob: extend(new Uint8Array(16)) },
        { label: "the tag repeated", blob: extend(tag) },
        { label: "1,000 random bytes", blob: extend(randomBytes(1000)) },
        { label: "1,000 zero bytes", blob: extend(new Uint8Array(1000)) },
        { label: "the whole blob again", blob: extend(bytes) },
      ];
      expect(
        await casesNotRejectedWithIntegrityError(
          cases,
          (c) => decrypt(c.blob),
          (c) => c.label,
        ),
      ).toEqual([]);
    },
  );

  it("rejects non-canonical base64 that a lenient decoder maps to the very same valid bytes", async () => {
    // One blob with "==" padding (1-byte plaintext: 34 bytes) and one with "=" (32 bytes: 65 bytes),
    // each containing a '+' or '/', so every variant below has something to vary.
    const blobs: string[] = [];
    for (const size of [1, 32]) {
      let blob: string;
      do blob = (await sealedBlob(size)).blob;
      while (!/[+/]/.test(blob));
      blobs.push(blob);
    }
    expect(blobs[0]).toMatch(/[^=]==$/);
    expect(blobs[1]).toMatch(/[^=]=$/);

    const cases: { label: string; text: string; original: string }[] = [];
    for (const blob of blobs) {
      const data = blob.replace(/=+$/, "");
      const padding = blob.slice(data.length);
      const last = data[data.length - 1] as string;
      // The unused low bits of the last data character are zero in canonical output; set one.
      const dirty = B64_ALPHABET[B64_ALPHABET.indexOf(last) | 1] as string;
      const middle = Math.floor(blob.length / 2);
      cases.push(
        { label: "padding stripped", text: data, original: blob },
        { label: "non-zero padding bits", text: `${data.slice(0, -1)}${dirty}${padding}`, original: blob },
        { label: "leading space", text: ` ${blob}`, original: blob },
        { label: "trailing newline", text: `${blob}\n`, original: blob },
        {
          label: "CRLF in the middle",
          text: `${blob.slice(0, middle)}\r\n${blob.slice(middle)}`,
          original: blob,
        },
        {
          label: "tab in the middle",
          text: `${blob.slice(0, middle)}\t${blob.slice(middle)}`,
          original: blob,
        },
        {
          label: "MIME line breaks every 8 characters",
          text: blob.replace(/(.{8})/g, "$1\n"),
          original: blob,
        },
      );
    }
    // These really are the same bytes to a forgiving decoder (atob), so only strictness rejects them.
    for (const c of cases) expect(hex(unb64(c.text)), c.label).toBe(hex(unb64(c.original)));

    expect(
      await casesNotRejectedWithIntegrityError(
        cases,
        (c) => decrypt(c.text),
        (c) => c.label,
      ),
    ).toEqual([]);
  });

  it("rejects text that is not base64 at all, and the empty blob, with IntegrityError", async () => {
    const { blob } = await sealedBlob(32);
    const cases = [
      { label: "empty", text: "" },
      { label: "URL-safe alphabet", text: blob.replaceAll("+", "-").replaceAll("/", "_").replace(/^./, "-") },
      { label: "extra '=' padding", text: `${blob}=` },
      { label: "'=' in the middle", text: `${blob.slice(0, 8)}=${blob.slice(8)}` },
      { label: "'!' appended", text: `${blob}!` },
      { label: "NUL inside", text: `${blob.slice(0, 4)}\u0000${blob.slice(4)}` },
      { label: "non-ASCII letter", text: `${blob.slice(0, 4)}é${blob.slice(5)}` },
      { label: "lone surrogate", text: `${blob.slice(0, 4)}\ud800${blob.slice(5)}` },
      { label: "hex instead of base64", text: hex(unb64(blob)) },
      { label: "JSON-quoted", text: JSON.stringify(blob) },
    ];
    expect(
      await casesNotRejectedWithIntegrityError(
        cases,
        (c) => decrypt(c.text),
        (c) => c.label,
      ),
    ).toEqual([]);
    await expectIntegrityError(decryptText(anyVersion, context, ""));
  });

  it("binds the key version into the AAD: a rewritten header version fails even if the resolver returns the same key", async () => {
    const { bytes } = await sealedBlob(32);
    const versions = [0, 2, 3, 255, 256, 65_536, 0x7fffffff, 0xffffffff];
    const asked: number[] = [];
    const escaped = await casesNotRejectedWithIntegrityError(
      versions,
      (version) => {
        const copy = bytes.slice();
        new DataView(copy.buffer).setUint32(1, version);
        return decryptBytes(
          async (v) => {
            asked.push(v);
            return dek;
          },
          context,
          b64(copy),
        );
      },
      (version) => `header version ${version}`,
    );
    expect(escaped).toEqual([]);
    // The header's version is what was handed to the resolver, once per blob.
    expect(asked.sort((a, b) => a - b)).toEqual(versions);
  });

  it("rejects a blob whose format byte is anything but 1, before asking for a key", async () => {
    const { bytes } = await sealedBlob(32);
    const formats = Array.from({ length: 256 }, (_, f) => f).filter((f) => f !== 1);
    let asked = 0;
    const escaped = await casesNotRejectedWithIntegrityError(
      formats,
      (format) => {
        const copy = bytes.slice();
        copy[0] = format;
        return decryptBytes(
          async () => {
            asked++;
            return dek;
          },
          context,
          b64(copy),
        );
      },
      (format) => `format ${format}`,
    );
    expect(escaped).toEqual([]);
    expect(asked).toBe(0);
  });

  it("parses the documented layout: format 1, big-endian key version, 12-byte IV, ciphertext and 16-byte tag", async () => {
    const plaintext = randomBytes(5);
    const blob = await encryptBytes(dek, 0x01020304, context, plaintext);
    const bytes = unb64(blob);
    expect(bytes[0]).toBe(1);
    expect([...bytes.subarray(1, 5)]).toEqual([1, 2, 3, 4]);
    const parsed = parseBlob(blob);
    expect(parsed.keyVersion).toBe(0x01020304);
    expect(hex(parsed.iv)).toBe(hex(bytes.subarray(5, 17)));
    expect(parsed.sealed.length).toBe(5 + TAG_BYTES);
    expect(await decryptBytes(anyVersion, context, blob)).toEqual(plaintext);
  });

  it("refuses to encrypt under a key version the 4-byte header cannot carry, instead of writing an undecryptable blob", async () => {
    const plaintext = new TextEncoder().encode("would be lost");
    // The boundaries that fit round-trip...
    for (const version of [0, 0xffffffff]) {
      const blob = await encryptBytes(dek, version, context, plaintext);
      expect(parseBlob(blob).keyVersion).toBe(version);
      expect(await decryptBytes(anyVersion, context, blob)).toEqual(plaintext);
    }
    // ...anything else is silently wrapped by DataView.setUint32 into a different header version while
    // the AAD keeps the original number: the write "succeeds" and the data can never be read back.
    for (const version of [2 ** 32, 2 ** 32 + 1, -1, 1.5, Number.NaN]) {
      await expect(
        encryptBytes(dek, version, context, plaintext),
        `key version ${version}`,
      ).rejects.toThrow();
    }
  });

  it("round-trips text, including empty and non-ASCII strings", async () => {
    for (const text of ["", "sk_live_abc", "пароль 🔑 \u0000 end"]) {
      const blob = await encryptText(dek, KEY_VERSION, context, text);
      expect(await decryptText(anyVersion, context, blob)).toBe(text);
      expect(blob).not.toContain(text || "\u0001");
    }
  });
});

describe("random IVs never repeat under one DEK (threat model case 5)", () => {
  it("gives 100,000 encryptions of the same plaintext under one DEK 100,000 distinct IVs and ciphertexts", async () => {
    const COUNT = 100_000;
    const BATCH = 2_000;
    const plaintext = new TextEncoder().encode("sk_live_the_same_secret_every_time");
    const ivs = new Set<string>();
    const ciphertexts = new Set<string>();
    const versions = new Set<number>();
    for (let done = 0; done < COUNT; done += BATCH) {
      const blobs = await Promise.all(
        Array.from({ length: BATCH }, () => encryptBytes(dek, KEY_VERSION, context, plaintext)),
      );
      for (const blob of blobs) {
        const parsed = parseBlob(blob);
        versions.add(parsed.keyVersion);
        ivs.add(hex(parsed.iv));
        ciphertexts.add(hex(parsed.sealed));
      }
    }
    expect(versions).toEqual(new Set([KEY_VERSION]));
    expect(ivs.size).toBe(COUNT);
    expect(ciphertexts.size).toBe(COUNT);
    // Every one of them is still a valid ciphertext of the same plaintext (spot check the last batch).
    const sample = await encryptBytes(dek, KEY_VERSION, context, plaintext);
    expect(await decryptBytes(anyVersion, context, sample)).toEqual(plaintext);
  });
});

describe("decryption raises only IntegrityError for bad data", () => {
  it("exports IntegrityError as a named Error subclass", () => {
    const error = new IntegrityError();
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe("IntegrityError");
  });
});
