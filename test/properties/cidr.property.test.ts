/**
 * Property tests for the IP allowlist matcher (src/keys/ip-allowlist.ts) against a reference
 * written here from scratch: addresses are generated as numbers, rendered to text in every
 * RFC 4291 §2.2 form (leading zeros or not, any case, `::` over any zero run, dotted IPv4 tail),
 * and containment is a plain bit-string prefix comparison. Text validity is checked against the
 * RFC 3986 §3.2.2 IPv6address / IPv4address ABNF, transcribed to a regular expression.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Cidr, cidrContains, ipAllowed, parseCidr, parseIp } from "../../src/keys/ip-allowlist";
import { runs } from "../setup/fast-check";

// ---------- reference model ----------

/** parseIp / parseCidr for inputs the test knows are valid: a null is a failure, not a skip. */
function ipOf(text: string): bigint {
  const ip = parseIp(text);
  if (ip === null) throw new Error(`parseIp rejected valid ${JSON.stringify(text)}`);
  return ip;
}

function cidrOf(text: string): Cidr {
  const cidr = parseCidr(text);
  if (cidr === null) throw new Error(`parseCidr rejected valid ${JSON.stringify(text)}`);
  return cidr;
}

const V4_MAPPED_BITS = `${"0".repeat(80)}${"1".repeat(16)}`;

function bitsOf(values: readonly number[], width: number): string {
  return values.map((v) => v.toString(2).padStart(width, "0")).join("");
}

const v4Bits = (octets: readonly number[]) => V4_MAPPED_BITS + bitsOf(octets, 8);
const v6Bits = (groups: readonly number[]) => bitsOf(groups, 16);
const bitsToBigInt = (bits: string) => BigInt(`0b${bits}`);

/** Reference containment on 128-bit strings; `prefix` counts bits in the 128-bit space. */
function refContains(networkBits: string, prefix: number, addressBits: string): boolean {
  return networkBits.slice(0, prefix) === addressBits.slice(0, prefix);
}

function clearHostBits(bits: string, prefix: number): string {
  return bits.slice(0, prefix) + "0".repeat(bits.length - prefix);
}

function octetsFromBits(bits32: string): number[] {
  return [0, 8, 16, 24].map((i) => Number.parseInt(bits32.slice(i, i + 8), 2));
}

function groupsFromBits(bits128: string): number[] {
  return Array.from({ length: 8 }, (_, i) => Number.parseInt(bits128.slice(i * 16, i * 16 + 16), 2));
}

// RFC 3986 §3.2.2 (IPv6address, ls32, h16) and dec-octet, verbatim in structure.
const DEC_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9][0-9]|[0-9])";
const IPV4_ADDRESS = `${DEC_OCTET}(?:\\.${DEC_OCTET}){3}`;
const H16 = "[0-9A-Fa-f]{1,4}";
const LS32 = `(?:${H16}:${H16}|${IPV4_ADDRESS})`;
const IPV6_ADDRESS = [
  `(?:${H16}:){6}${LS32}`,
  `::(?:${H16}:){5}${LS32}`,
  `(?:${H16})?::(?:${H16}:){4}${LS32}`,
  `(?:(?:${H16}:){0,1}${H16})?::(?:${H16}:){3}${LS32}`,
  `(?:(?:${H16}:){0,2}${H16})?::(?:${H16}:){2}${LS32}`,
  `(?:(?:${H16}:){0,3}${H16})?::${H16}:${LS32}`,
  `(?:(?:${H16}:){0,4}${H16})?::${LS32}`,
  `(?:(?:${H16}:){0,5}${H16})?::${H16}`,
  `(?:(?:${H16}:){0,6}${H16})?::`,
]
  .map((alternative) => `(?:${alternative})`)
  .join("|");
const RFC_IPV4 = new RegExp(`^${IPV4_ADDRESS}$`);
const RFC_IPV6 = new RegExp(`^(?:${IPV6_ADDRESS})$`);
const rfcValid = (text: string) => RFC_IPV4.test(text) || RFC_IPV6.test(text);

// ---------- generators ----------

const octetArb = fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0, 1, 127, 128, 255));
const octetsArb = fc.array(octetArb, { minLength: 4, maxLength: 4 });
const groupArb = fc.oneof(
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 1, arbitrary: fc.constantFrom(1, 0xffff, 0x2001, 0xdb8, 0xfe80) },
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
);
const groupsArb = fc.array(groupArb, { minLength: 8, maxLength: 8 });

interface RenderStyle {
  leadingZeros: boolean;
  letterCase: "lower" | "upper" | "mixed";
  dottedTail: boolean;
  /** Which zero run to compress (index into the list of runs), and how much of it. */
  compress: { run: number; from: number; to: number } | null;
}

const styleArb: fc.Arbitrary<RenderStyle> = fc.record({
  leadingZeros: fc.boolean(),
  letterCase: fc.constantFrom("lower", "upper", "mixed"),
  dottedTail: fc.boolean(),
  compress: fc.option(fc.record({ run: fc.nat(), from: fc.nat(), to: fc.nat() }), { nil: null }),
});

function renderV6(groups: readonly number[], style: RenderStyle): string {
  const hexCount = style.dottedTail ? 6 : 8;
  const hex = groups.slice(0, hexCount).map((group, i) => {
    const text = style.leadingZeros ? group.toString(16).padStart(4, "0") : group.toString(16);
    if (style.letterCase === "upper") return text.toUpperCase();
    if (style.letterCase === "mixed") return i % 2 ? text.toUpperCase() : text;
    return text;
  });
  const tail = style.dottedTail
    ? [(groups[6] ?? 0) >> 8, (groups[6] ?? 0) & 0xff, (groups[7] ?? 0) >> 8, (groups[7] ?? 0) & 0xff].join(
        ".",
      )
    : null;
  const runs: [number, number][] = [];
  for (let i = 0; i < hexCount; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < hexCount && groups[j] === 0) j++;
    runs.push([i, j]);
    i = j;
  }
  const withTail = (text: string) => (tail === null ? text : text ? `${text}:${tail}` : tail);
  if (!style.compress || runs.length === 0) return withTail(hex.join(":"));
  const [runStart, runEnd] = runs[style.compress.run % runs.length] ?? [0, 0];
  const length = runEnd - runStart;
  const from = runStart + (style.compress.from % length);
  const to = from + 1 + (style.compress.to % (runEnd - from));
  const left = hex.slice(0, from).join(":");
  const right = hex.slice(to).join(":");
  return `${left}::${withTail(right)}`;
}

const v6AddressArb = fc.record({ groups: groupsArb, style: styleArb }).map(({ groups, style }) => ({
  groups,
  text: renderV6(groups, style),
  bits: v6Bits(groups),
}));

const v4AddressArb = octetsArb.map((octets) => ({ octets, text: octets.join("."), bits: v4Bits(octets) }));

/** A network and an address that shares a random number of leading bits with it. */
function networkAndAddress(width: 32 | 128) {
  return fc
    .record({
      networkBits: fc.array(fc.boolean(), { minLength: width, maxLength: width }),
      addressTail: fc.array(fc.boolean(), { minLength: width, maxLength: width }),
      shared: fc.integer({ min: 0, max: width }),
      prefix: fc.integer({ min: 0, max: width }),
    })
    .map(({ networkBits, addressTail, shared, prefix }) => {
      const raw = networkBits.map((b) => (b ? "1" : "0")).join("");
      const network = clearHostBits(raw, prefix);
      const address =
        raw.slice(0, shared) +
        addressTail
          .map((b) => (b ? "1" : "0"))
          .join("")
          .slice(shared);
      return { network, address, prefix };
    });
}

/** Valid address renders with 0–2 random character edits: mostly-near-miss strings. */
const addressAlphabet = [..."0123456789abcdefABCDEFgG:.:.%/ -x"];
const nearMissArb = fc
  .tuple(
    fc.oneof(
      v6AddressArb.map((a) => a.text),
      v4AddressArb.map((a) => a.text),
    ),
    fc.array(
      fc.record({
        kind: fc.constantFrom("insert", "delete", "replace"),
        at: fc.nat(),
        char: fc.constantFrom(...addressAlphabet),
      }),
      { maxLength: 2 },
    ),
  )
  .map(([text, edits]) =>
    edits.reduce((s, { kind, at, char }) => {
      const i = s.length === 0 ? 0 : at % (s.length + (kind === "insert" ? 1 : 0));
      if (kind === "insert") return s.slice(0, i) + char + s.slice(i);
      if (kind === "delete") return s.slice(0, i) + s.slice(i + 1);
      return s.slice(0, i) + char + s.slice(i + 1);
    }, text),
  );

const anyStringArb = fc.oneof(
  fc.string({ unit: "binary", maxLength: 80 }),
  fc.string({ unit: fc.constantFrom(...addressAlphabet), maxLength: 50 }),
  nearMissArb,
  fc.ipV4(),
  fc.ipV4Extended(),
  fc.ipV6(),
  fc.constantFrom(
    "",
    "::",
    ":::",
    "1::2::3",
    "::ffff:1.2.3.4",
    "1.2.3.4/",
    "/",
    "\u0000",
    "\ud800",
    "١.٢.٣.٤",
  ),
);

// ---------- properties ----------

describe("IP parsing against the reference model", () => {
  it("the RFC 3986 reference grammar agrees with known examples", () => {
    for (const ok of [
      "::",
      "::1",
      "1::",
      "2001:db8::1",
      "::ffff:1.2.3.4",
      "1:2:3:4:5:6:7:8",
      "1:2:3:4:5:6:1.2.3.4",
    ]) {
      expect(rfcValid(ok), ok).toBe(true);
    }
    for (const bad of [
      ":::",
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "01.2.3.4",
      "1.2.3",
      "1:2:3:4:5:6:7:1.2.3.4",
      "g::",
    ]) {
      expect(rfcValid(bad), bad).toBe(false);
    }
  });

  it("every rendering of an IPv6 address (leading zeros, case, any `::`, dotted tail) parses to its value", () => {
    fc.assert(
      fc.property(v6AddressArb, ({ text, bits }) => {
        expect(rfcValid(text), `reference rejects its own render ${text}`).toBe(true);
        expect(parseIp(text)).toBe(bitsToBigInt(bits));
      }),
      { numRuns: runs(2_000) },
    );
  });

  it("every dotted-quad IPv4 address parses to its v4-mapped value", () => {
    fc.assert(
      fc.property(v4AddressArb, ({ text, bits }) => {
        expect(parseIp(text)).toBe(bitsToBigInt(bits));
      }),
      { numRuns: runs(1_000) },
    );
  });

  it("parseIp accepts exactly the strings the RFC 3986 grammar accepts, and never throws", () => {
    fc.assert(
      fc.property(anyStringArb, (text) => {
        const parsed = parseIp(text);
        expect(parsed !== null, `parseIp(${JSON.stringify(text)})`).toBe(rfcValid(text));
        if (parsed !== null) {
          expect(parsed).toBeGreaterThanOrEqual(0n);
          expect(parsed).toBeLessThan(1n << 128n);
        }
      }),
      { numRuns: runs(3_000) },
    );
  });

  it("parseCidr, cidrContains and ipAllowed never throw on arbitrary strings", () => {
    fc.assert(
      fc.property(anyStringArb, anyStringArb, fc.option(fc.string({ maxLength: 5 })), (a, b, suffix) => {
        const text = suffix === null ? a : `${a}/${suffix}`;
        const cidr = parseCidr(text);
        if (cidr !== null) {
          expect(cidr.prefix).toBeGreaterThanOrEqual(0);
          expect(cidr.prefix).toBeLessThanOrEqual(128);
          const ip = parseIp(b);
          if (ip !== null) expect(typeof cidrContains(cidr, ip)).toBe("boolean");
        }
        expect(typeof ipAllowed([text, a, b], b)).toBe("boolean");
      }),
      { numRuns: runs(2_000) },
    );
  });
});

describe("CIDR containment against bit-string comparison", () => {
  it("IPv4: cidrContains agrees with the reference for random networks, prefixes and addresses", () => {
    fc.assert(
      fc.property(networkAndAddress(32), ({ network, address, prefix }) => {
        const cidr = cidrOf(`${octetsFromBits(network).join(".")}/${prefix}`);
        expect(cidr.prefix).toBe(prefix + 96);
        const ip = ipOf(octetsFromBits(address).join("."));
        const expected = refContains(V4_MAPPED_BITS + network, prefix + 96, V4_MAPPED_BITS + address);
        expect(cidrContains(cidr, ip)).toBe(expected);
        expect(
          ipAllowed([`${octetsFromBits(network).join(".")}/${prefix}`], octetsFromBits(address).join(".")),
        ).toBe(expected);
      }),
      { numRuns: runs(2_000) },
    );
  });

  it("IPv6: cidrContains agrees with the reference for every rendering of network and address", () => {
    fc.assert(
      fc.property(
        networkAndAddress(128),
        styleArb,
        styleArb,
        ({ network, address, prefix }, netStyle, ipStyle) => {
          const networkText = renderV6(groupsFromBits(network), netStyle);
          const addressText = renderV6(groupsFromBits(address), ipStyle);
          const cidr = cidrOf(`${networkText}/${prefix}`);
          expect(cidr.prefix).toBe(prefix);
          const ip = ipOf(addressText);
          expect(ip).toBe(bitsToBigInt(address));
          expect(cidrContains(cidr, ip)).toBe(refContains(network, prefix, address));
        },
      ),
      { numRuns: runs(2_000) },
    );
  });

  it("a bare address is a /32 or /128 that contains itself and nothing else", () => {
    fc.assert(
      fc.property(
        fc.oneof(v4AddressArb, v6AddressArb),
        fc.oneof(v4AddressArb, v6AddressArb),
        (self, other) => {
          const cidr = cidrOf(self.text);
          expect(cidr.prefix).toBe(128);
          expect(cidrContains(cidr, ipOf(self.text))).toBe(true);
          expect(cidrContains(cidr, ipOf(other.text))).toBe(self.bits === other.bits);
        },
      ),
      { numRuns: runs(1_000) },
    );
  });

  it("parseCidr rejects a network with any host bit set", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          v4AddressArb.map((a) => ({ ...a, width: 32 })),
          v6AddressArb.map((a) => ({ ...a, width: 128 })),
        ),
        fc.nat(),
        (address, seed) => {
          const ownBits = address.width === 32 ? address.bits.slice(96) : address.bits;
          const prefix = seed % (address.width + 1);
          const hostBitsSet = ownBits.slice(prefix).includes("1");
          const cidr = parseCidr(`${address.text}/${prefix}`);
          expect(cidr === null).toBe(hostBitsSet);
        },
      ),
      { numRuns: runs(2_000) },
    );
  });

  it("prefix lengths beyond the family's width, and malformed prefixes, are rejected", () => {
    fc.assert(
      fc.property(
        fc.oneof(v4AddressArb, v6AddressArb),
        fc.oneof(
          fc.integer({ min: 33, max: 999 }).map(String),
          fc.constantFrom("", "-1", "+8", " 8", "8 ", "1.5", "0x8", "1e1", "８", "0/0"),
        ),
        (address, prefix) => {
          const isV4 = address.text.includes(".") && !address.text.includes(":");
          const n = Number(prefix);
          const legalForV6 = /^\d{1,3}$/.test(prefix) && n <= 128;
          if (!isV4 && legalForV6) return; // 33..128 are fine for IPv6
          expect(parseCidr(`${address.text}/${prefix}`)).toBeNull();
        },
      ),
      { numRuns: runs(1_000) },
    );
  });
});

describe("IPv4-mapped IPv6", () => {
  const mappedForms = (octets: number[]) => {
    const [a = 0, b = 0, c = 0, d = 0] = octets;
    const hi = ((a << 8) | b).toString(16);
    const lo = ((c << 8) | d).toString(16);
    return [
      `::ffff:${octets.join(".")}`,
      `::FFFF:${octets.join(".")}`,
      `0:0:0:0:0:ffff:${octets.join(".")}`,
      `::ffff:${hi}:${lo}`,
      `0000:0000:0000:0000:0000:ffff:${hi.padStart(4, "0")}:${lo.padStart(4, "0")}`,
    ];
  };

  it("an IPv4 CIDR treats a.b.c.d and every ::ffff:a.b.c.d form identically", () => {
    fc.assert(
      fc.property(networkAndAddress(32), ({ network, address, prefix }) => {
        const cidr = cidrOf(`${octetsFromBits(network).join(".")}/${prefix}`);
        const octets = octetsFromBits(address);
        const plain = cidrContains(cidr, ipOf(octets.join(".")));
        for (const form of mappedForms(octets)) {
          expect(parseIp(form), form).toBe(parseIp(octets.join(".")));
          expect(cidrContains(cidr, ipOf(form))).toBe(plain);
        }
      }),
      { numRuns: runs(1_000) },
    );
  });

  it("an IPv4 CIDR (even 0.0.0.0/0) never contains a non-mapped IPv6 address, including ::a.b.c.d", () => {
    fc.assert(
      fc.property(v4AddressArb, fc.integer({ min: 0, max: 32 }), v6AddressArb, (network, prefix, address) => {
        const text = `${octetsFromBits(clearHostBits(network.bits.slice(96), prefix)).join(".")}/${prefix}`;
        const cidr = cidrOf(text);
        const isMapped = address.bits.startsWith(V4_MAPPED_BITS);
        if (!isMapped) expect(cidrContains(cidr, ipOf(address.text))).toBe(false);
        // The deprecated IPv4-compatible form ::a.b.c.d is plain IPv6, not IPv4.
        expect(cidrContains(cidr, ipOf(`::${network.text}`))).toBe(false);
      }),
      { numRuns: runs(1_000) },
    );
  });

  it("::ffff:0:0/96 contains every IPv4 address, and ::/0 contains everything", () => {
    const mappedNet = cidrOf("::ffff:0:0/96");
    const everything = cidrOf("::/0");
    fc.assert(
      fc.property(v4AddressArb, v6AddressArb, (v4, v6) => {
        expect(cidrContains(mappedNet, ipOf(v4.text))).toBe(true);
        expect(cidrContains(everything, ipOf(v4.text))).toBe(true);
        expect(cidrContains(everything, ipOf(v6.text))).toBe(true);
      }),
      { numRuns: runs(500) },
    );
  });
});
