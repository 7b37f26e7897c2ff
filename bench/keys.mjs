// Test fixture: a plain-JS copy of the key format in src/crypto/keys.ts, crc32.ts and random.ts, so the
// bench can mint thousands of keys without the API. run.mjs checks that the worker accepts them (every
// seeded key must verify VALID with its own key_id), so a drift from src/ fails loudly, not silently.
import { createHash, randomBytes } from "node:crypto";

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/** randomLengthForLevel("basic") in src/crypto/keys.ts: 128 bits plus what `last4` may reveal. */
export const RANDOM_LENGTH = Math.ceil((128 + 4 * Math.log2(62)) / Math.log2(62));
const CHECKSUM_LENGTH = 6;

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(text) {
  let crc = 0xffffffff;
  for (let i = 0; i < text.length; i++) crc = CRC_TABLE[(crc ^ text.charCodeAt(i)) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

export function checksumOf(randomPart) {
  let value = crc32(randomPart);
  let out = "";
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out = BASE62[value % 62] + out;
    value = Math.floor(value / 62);
  }
  return out;
}

/**
 * Random bytes drawn from one pool refilled 64 KiB at a time: seeding a million keys called randomBytes
 * twice per key (the secret and the id), and those calls were most of the minting time.
 */
const POOL_BYTES = 65_536;
let pool = randomBytes(POOL_BYTES);
let poolAt = 0;
function randomByte() {
  if (poolAt === POOL_BYTES) {
    pool = randomBytes(POOL_BYTES);
    poolAt = 0;
  }
  return pool[poolAt++];
}

/** Uniform base62 by rejection sampling, as src/crypto/random.ts does. */
export function randomBase62(length) {
  let out = "";
  while (out.length < length) {
    const byte = randomByte();
    if (byte < 248) out += BASE62[byte % 62];
  }
  return out;
}

/** A well-formed `basic` key: `<prefix>_live_<26 base62><6-char base62 CRC32>`. */
export function generateKey(prefix) {
  const randomPart = randomBase62(RANDOM_LENGTH);
  return `${prefix}_live_${randomPart}${checksumOf(randomPart)}`;
}

/** Same shape, last character changed: fails the checksum, so the worker must answer INVALID_FORMAT. */
export function breakChecksum(key) {
  const last = key.at(-1);
  return key.slice(0, -1) + (last === "A" ? "B" : "A");
}

export function hashKey(key) {
  return createHash("sha256").update(key).digest("hex");
}

/** A stored-key row as src/keys/issue-key.ts would write it for `{ name }` with default settings. */
export function mintStoredKey(tenantId, prefix, name, now) {
  const key = generateKey(prefix);
  const head = `${prefix}_live_`;
  return {
    key,
    row: {
      id: `key_${randomBase62(22)}`,
      tenant_id: tenantId,
      name,
      hash: hashKey(key),
      start: head,
      last4: key.slice(-4),
      environment: "live",
      security_level: "basic",
      scopes: "[]",
      enabled: 1,
      limits_version: 1,
      created_at: now,
      updated_at: now,
    },
  };
}
