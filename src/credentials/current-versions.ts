import { and, eq } from "drizzle-orm";
import type { Database } from "../db/client";
import { credentials, credentialVersions } from "../db/schema";

/** Credentials joined to their current version: what every masked listing shows. */
export function credentialsWithCurrentVersion(db: Database) {
  return db
    .select({ credential: credentials, version: credentialVersions })
    .from(credentials)
    .innerJoin(
      credentialVersions,
      and(
        eq(credentialVersions.credentialId, credentials.id),
        eq(credentialVersions.version, credentials.currentVersion),
      ),
    );
}
