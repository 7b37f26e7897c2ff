import { utf8 } from "../crypto/encoding";
import { randomBytes } from "../crypto/random";
import type { Database } from "../db/client";
import { ApiError } from "../errors";
import type { Unsealed } from "../vault/keyring";
import { BUNDLE_FORMAT, bundleOf } from "./bundle";
import { encodeContentKey, encryptDirect, encryptTo, type Recipient } from "./export-jwe";
import { type BundleCounts, EXPORT_PAGE_SIZE, tenantPages } from "./tenant-pages";

/**
 * A tenant with more credentials or keys than this is exported only as a stream: one JWE of the whole bundle
 * would be built (and decrypted again on import) in one piece of isolate memory.
 */
export const INLINE_EXPORT_MAX_ROWS = 1_000;

/** The streamed export's media type and the format named in its first line. */
export const STREAM_MEDIA_TYPE = "application/x-ndjson";
export const STREAM_FORMAT = "keywarden.tenant-export-stream/1";

/** The first line of a streamed export, once decrypted with the passphrase or private key. */
export interface StreamHeader {
  format: typeof STREAM_FORMAT;
  bundle_format: typeof BUNDLE_FORMAT;
  exported_at: string;
  source_tenant: string;
  /** base64url of the 256-bit key every following line is encrypted under (`dir` + A256GCM). */
  content_key: string;
}

/** The last line: how many page lines came before it, so a truncated stream is detected. */
export interface StreamEnd {
  seq: number;
  end: true;
  pages: number;
  counts: BundleCounts;
}

export function assertInlineExportSize(counts: Pick<BundleCounts, "credentials" | "keys">): void {
  if (counts.credentials > INLINE_EXPORT_MAX_ROWS || counts.keys > INLINE_EXPORT_MAX_ROWS) {
    throw new ApiError(
      "VALIDATION_FAILED",
      `This tenant has more than ${INLINE_EXPORT_MAX_ROWS} credentials or keys: ask for the streamed export.`,
      {
        errors: [
          { path: "stream", message: `must be true for tenants of more than ${INLINE_EXPORT_MAX_ROWS} rows` },
        ],
      },
    );
  }
}

/** The whole bundle as one compact JWE to the recipient (the `{ "jwe" }` of DESIGN.md). */
export async function exportInline(
  keys: Unsealed,
  db: Database,
  tenantId: string,
  recipient: Recipient,
  now: number,
): Promise<string> {
  const pages = [];
  for await (const page of tenantPages(keys, db, tenantId)) pages.push(page);
  const bundle = bundleOf(pages, { exportedAt: new Date(now).toISOString(), sourceTenant: tenantId });
  return encryptTo(recipient, utf8(JSON.stringify(bundle)));
}

/**
 * The bundle as NDJSON, one compact JWE per line, produced page by page while the client reads:
 * - line 0: to the recipient (passphrase or public key), a StreamHeader carrying a fresh random content key;
 * - lines 1..n: one page each, `dir` + A256GCM under that content key, `seq` in the protected header (which
 *   is the AAD, RFC 7516 §5.1 step 14) and in the payload;
 * - the last line: a StreamEnd with the number of pages, so dropped, reordered or truncated lines are caught.
 * The content key is random per export, so a line of another export cannot be spliced in: it does not open.
 */
export function exportStream(
  keys: Unsealed,
  db: Database,
  tenantId: string,
  recipient: Recipient,
  counts: BundleCounts,
  now: number,
  pageSize = EXPORT_PAGE_SIZE,
): ReadableStream<Uint8Array> {
  const contentKey = randomBytes(32);
  const pages = tenantPages(keys, db, tenantId, pageSize);
  let seq = 0;
  let done = false;
  const line = (jwe: string) => utf8(`${jwe}\n`);
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (done) return;
      if (seq === 0) {
        const header: StreamHeader = {
          format: STREAM_FORMAT,
          bundle_format: BUNDLE_FORMAT,
          exported_at: new Date(now).toISOString(),
          source_tenant: tenantId,
          content_key: encodeContentKey(contentKey),
        };
        controller.enqueue(line(await encryptTo(recipient, utf8(JSON.stringify(header)), { seq })));
        seq += 1;
        return;
      }
      const next = await pages.next();
      if (next.done) {
        const end: StreamEnd = { seq, end: true, pages: seq - 1, counts };
        controller.enqueue(line(await encryptDirect(contentKey, utf8(JSON.stringify(end)), { seq })));
        done = true;
        controller.close();
        return;
      }
      controller.enqueue(
        line(await encryptDirect(contentKey, utf8(JSON.stringify({ seq, ...next.value })), { seq })),
      );
      seq += 1;
    },
    async cancel() {
      await pages.return(undefined);
    },
  });
}
