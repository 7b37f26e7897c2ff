import type { z } from "@hono/zod-openapi";
import { ApiError } from "../errors";
import {
  BUNDLE_FORMAT,
  type BundlePage,
  BundlePageSchema,
  bundleOf,
  type TenantBundle,
  TenantBundleSchema,
} from "./bundle";
import { STREAM_FORMAT, type StreamEnd, type StreamHeader } from "./export";
import { decodeContentKey, decryptDirect, decryptWith, type Opener, unreadableExport } from "./export-jwe";

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

function jsonOf(plaintext: Uint8Array): unknown {
  try {
    return JSON.parse(decoder.decode(plaintext));
  } catch {
    throw unreadableExport("its content is not JSON");
  }
}

/** A bundle that opened but does not match the format: paths and messages only, never a value. */
function invalidBundle(error: z.ZodError, at: string): ApiError {
  return new ApiError(
    "VALIDATION_FAILED",
    "The export opened but its content is not a valid tenant bundle.",
    {
      errors: error.issues.slice(0, 20).map((issue) => ({
        path: [at, ...issue.path.map(String)].join("."),
        message: issue.message,
      })),
    },
  );
}

function parseBundle(value: unknown, at = "bundle"): TenantBundle {
  const format = (value as { format?: unknown } | null)?.format;
  if (format !== BUNDLE_FORMAT) {
    throw new ApiError("VALIDATION_FAILED", `This is not a ${BUNDLE_FORMAT} export.`, {
      errors: [{ path: `${at}.format`, message: `must be ${BUNDLE_FORMAT}` }],
    });
  }
  const parsed = TenantBundleSchema.safeParse(value);
  if (!parsed.success) throw invalidBundle(parsed.error, at);
  return parsed.data;
}

/**
 * A streamed export (export.ts `exportStream`): the first line opens with the passphrase or private key and
 * gives the content key; every later line must open under it, carry the next `seq` in both its protected
 * header and its payload, and the last line must count exactly the pages before it. Anything else (a line
 * altered, dropped, repeated, reordered, appended or cut off) refuses the whole import.
 */
async function readStream(lines: string[], opener: Opener): Promise<TenantBundle> {
  const [first, ...rest] = lines;
  const opened = await decryptWith(first as string, opener);
  const header = jsonOf(opened.plaintext) as Partial<StreamHeader> | null;
  if (header?.format !== STREAM_FORMAT || header.bundle_format !== BUNDLE_FORMAT || opened.header.seq !== 0)
    throw unreadableExport(`its first line is not a ${STREAM_FORMAT} header`);
  const contentKey = decodeContentKey(header.content_key);
  const pages: BundlePage[] = [];
  let end: StreamEnd | null = null;
  for (const [index, line] of rest.entries()) {
    const seq = index + 1;
    if (end) throw unreadableExport("it has lines after its end");
    const { header: lineHeader, plaintext } = await decryptDirect(line, contentKey);
    const payload = jsonOf(plaintext) as { seq?: unknown; end?: unknown } & Record<string, unknown>;
    if (lineHeader.seq !== seq || payload?.seq !== seq) throw unreadableExport(`line ${seq} is out of order`);
    if (payload.end === true) {
      end = payload as unknown as StreamEnd;
      if (end.pages !== seq - 1) throw unreadableExport("its end does not count the lines before it");
      continue;
    }
    const { seq: _seq, ...page } = payload;
    const parsed = BundlePageSchema.safeParse(page);
    if (!parsed.success) throw invalidBundle(parsed.error, `line ${seq}`);
    pages.push(parsed.data as BundlePage);
  }
  if (!end) throw unreadableExport("it is truncated (no end line)");
  return parseBundle(
    bundleOf(pages, {
      exportedAt: String(header.exported_at),
      sourceTenant: String(header.source_tenant),
    }),
  );
}

/**
 * The bundle inside an export: a compact JWE of the whole bundle, or the NDJSON lines of a streamed one.
 * Whatever is wrong (a tampered byte, the wrong passphrase, another format) refuses it before anything is
 * compared or written.
 */
export async function readExport(text: string, opener: Opener): Promise<TenantBundle> {
  const lines = text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line.length > 0);
  if (lines.length === 0) throw unreadableExport("it is empty");
  if (lines.length > 1) return readStream(lines, opener);
  const { plaintext } = await decryptWith(lines[0] as string, opener);
  return parseBundle(jsonOf(plaintext));
}
