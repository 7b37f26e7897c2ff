/** threat model case 17: strings stitched from SQL metacharacters, shared by the sql-metacharacters files. */
import fc from "fast-check";

export const FRAGMENTS = [
  "' OR 1=1 --",
  "' OR '1'='1",
  '" OR ""="',
  '"; DROP TABLE api_keys; --',
  "'; DELETE FROM tenants; --",
  "1; UPDATE api_keys SET revoked_at = 1",
  "') UNION SELECT hash, hash FROM api_keys --",
  "%",
  "_",
  "%_%",
  "\\",
  "\\'",
  "\\\\",
  "\\%",
  "’",
  "‘",
  "“",
  "”",
  "＇",
  "ʼ",
  "`",
  "--",
  "/*",
  "*/",
  ";",
  "?",
  "?1",
  ":name",
  "@p",
  "$1",
  "\u0000",
  "NULL",
  "null",
  "0x00",
  "char(39)",
  "||",
  "ATTACH DATABASE 'x' AS y",
  "PRAGMA writable_schema=1",
];

/** A string stitched from SQL fragments and filler. */
export const sqlishArb = fc
  .array(fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...FRAGMENTS) }, fc.string({ maxLength: 6 })), {
    minLength: 1,
    maxLength: 5,
  })
  .map((parts) => parts.join(""));

/** Non-blank after trim and ≤ 100 characters: a name the schema accepts. */
export const legalNameArb = sqlishArb.map((s) => s.slice(0, 100)).filter((s) => s.trim().length > 0);
