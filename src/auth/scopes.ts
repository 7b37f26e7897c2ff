/** Keywarden's own permissions. Anything else a tenant puts on a key is its own custom scope. */
export const SCOPES = [
  "keys:read",
  "keys:write",
  "keys:verify",
  "credentials:read",
  "credentials:write",
  "credentials:reveal",
  "monitoring:read",
  "monitoring:write",
  "audit:read",
  "wizard",
  "admin",
] as const;

export type Scope = (typeof SCOPES)[number];

export const ROLES = {
  read_only: ["keys:read", "credentials:read", "monitoring:read", "audit:read"],
  read_write: [
    "keys:read",
    "keys:write",
    "keys:verify",
    "credentials:read",
    "credentials:write",
    "monitoring:read",
    "monitoring:write",
    "audit:read",
  ],
  admin: SCOPES,
} as const satisfies Record<string, readonly Scope[]>;

export type Role = keyof typeof ROLES;

export const CUSTOM_SCOPE_PATTERN = /^[a-z][a-z0-9_.:-]{0,63}$/;

export function isKeywardenScope(scope: string): scope is Scope {
  return (SCOPES as readonly string[]).includes(scope);
}

/**
 * A caller may grant only Keywarden scopes it holds itself, so `keys:write` can never mint an
 * `admin` key (OWASP API Security 2023 API5: broken function level authorisation).
 */
export function scopesBeyondGrant(requested: readonly string[], held: ReadonlySet<string>): string[] {
  return requested.filter((scope) => isKeywardenScope(scope) && !held.has(scope));
}
