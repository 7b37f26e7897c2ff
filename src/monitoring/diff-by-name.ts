/** What a reconcile does with one named thing (a channel, a rule). */
export const CHANGES = ["added", "changed", "removed", "unchanged"] as const;
export type Change = (typeof CHANGES)[number];

export interface NamedChange<K extends string> {
  name: string;
  kind: K;
  change: Change;
  /** The stored one's id; null for one that is added. */
  id: string | null;
  /** Which settings differ (names only, never values). */
  fields: string[];
}

interface Stored<K extends string, S> {
  id: string;
  name: string;
  kind: K;
  current: S;
}

/**
 * How a wanted set differs from the stored one, matched by name (unique per tenant): a name only wanted is
 * added, a name only stored is removed (when `removable` says it may be), a name in both is unchanged or
 * changed according to `changedFields`.
 */
export function diffByName<K extends string, S extends { name: string; kind: K }>(
  stored: readonly Stored<K, S>[],
  wanted: readonly S[],
  changedFields: (before: S, after: S) => string[],
  removable: (kind: K) => boolean = () => true,
): NamedChange<K>[] {
  const byName = new Map(stored.map((entry) => [entry.name, entry]));
  const wantedNames = new Set(wanted.map((item) => item.name));
  const changes: NamedChange<K>[] = wanted.map((item) => {
    const existing = byName.get(item.name);
    if (!existing) return { name: item.name, kind: item.kind, change: "added", id: null, fields: [] };
    const fields = changedFields(existing.current, item);
    return {
      name: item.name,
      kind: item.kind,
      change: fields.length ? "changed" : "unchanged",
      id: existing.id,
      fields,
    };
  });
  for (const entry of stored) {
    if (!wantedNames.has(entry.name) && removable(entry.kind)) {
      changes.push({ name: entry.name, kind: entry.kind, change: "removed", id: entry.id, fields: [] });
    }
  }
  return changes;
}
