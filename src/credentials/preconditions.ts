import { ApiError } from "../errors";

/** The message of migration 0006's `credentials_revision_cas` trigger (RAISE(ABORT, …)). */
const REVISION_CAS_ABORT = "credentials.revision compare-and-set failed";
/** The (credential_id, version) primary key of credential_versions. */
const VERSION_TAKEN = "credential_versions.credential_id";

const CHANGED_MEANWHILE = "The credential changed meanwhile; reload it and retry.";

/**
 * The entity tags of an If-Match field value, or null when the value is not a well-formed list.
 * `W/` tags are returned flagged, so the caller can apply the strong comparison If-Match requires.
 */
export function parseEntityTags(value: string): { weak: boolean; tag: string }[] | null {
  // One list element (RFC 9110 §8.8.3, §5.6.1): OWS, an optional `W/` and a quoted opaque tag of etagc
  // (%x21 / %x23-7E / obs-text), OWS, then a comma or the end. An element may be empty (`a, , b`),
  // which recipients must accept and ignore (§5.6.1.2). Sticky, so nothing between elements is skipped.
  const element = /[ \t]*(?:(W\/)?("[\x21\x23-\x7e\x80-\xff]*"))?[ \t]*(,|$)/y;
  const tags: { weak: boolean; tag: string }[] = [];
  while (element.lastIndex < value.length) {
    const match = element.exec(value);
    if (!match) return null;
    const [, weak, tag, separator] = match;
    if (tag) tags.push({ weak: weak !== undefined, tag });
    if (separator === "") break;
  }
  return tags;
}

/**
 * The If-Match precondition of a write (RFC 9110 §13.1.1, evaluated as §13.2.2 step 1), against the
 * credential's current strong ETag:
 * - an ABSENT header is the only "missing precondition": 428 (RFC 6585 §3), so a client that never read
 *   the credential cannot overwrite a change it has not seen (the lost update);
 * - a PRESENT header is a precondition, and it holds only if one of its entity tags strongly matches the
 *   current ETag. A blank value (an empty list: `fetch` trims `" "` to `""`), a malformed one, a weak tag
 *   (`W/…` never matches strongly) or a stale one is a precondition that is false: 412;
 * - `*` would hold for any current representation under RFC 9110, which would let a client write over
 *   changes it never saw. This API needs the ETag the client read, so `*` is refused with 412, as a
 *   condition the server does not accept rather than a missing one.
 */
export function assertIfMatch(header: string | undefined, currentEtag: string): void {
  if (header === undefined) {
    throw new ApiError("PRECONDITION_REQUIRED", "Send If-Match with the credential's ETag.");
  }
  if (header.trim() === "*") {
    throw new ApiError(
      "PRECONDITION_FAILED",
      "If-Match: * is not accepted here; send the ETag you read so that a change made meanwhile is not overwritten.",
    );
  }
  const tags = parseEntityTags(header);
  if (tags === null) {
    throw new ApiError("PRECONDITION_FAILED", "If-Match must be a list of quoted entity tags.");
  }
  if (!tags.some((t) => !t.weak && t.tag === currentEtag)) {
    throw new ApiError("PRECONDITION_FAILED", CHANGED_MEANWHILE);
  }
}

/**
 * The catch of a credential write batch. Each batch sets `revision` to exactly the revision it read
 * plus one, so a concurrent writer that committed first makes the trigger abort the whole batch, its
 * audit row included: the later writer lost the race and answers 412 like a stale If-Match.
 */
export function concurrentChangeFailed(error: unknown): never {
  if (isConcurrentChange(error)) throw new ApiError("PRECONDITION_FAILED", CHANGED_MEANWHILE);
  throw error;
}

/** Whether a failed credential batch lost a race: the revision compare-and-set or a version number taken. */
export function isConcurrentChange(error: unknown): boolean {
  const text = String((error as { cause?: unknown })?.cause ?? error);
  return text.includes(REVISION_CAS_ABORT) || text.includes(VERSION_TAKEN);
}
