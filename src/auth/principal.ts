/** Who is calling. The tenant comes only from here: never from a header, query or body. */
export interface Principal {
  tenantId: string;
  keyId: string;
  scopes: ReadonlySet<string>;
  via: "key" | "session";
  /** Sessions only: when the admin signed in, for step-up checks on sensitive calls. */
  authenticatedAt?: number;
}
