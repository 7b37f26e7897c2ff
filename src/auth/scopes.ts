import { ApiError } from "../errors";

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

/** The scope that makes a key admin-capable: it can grant, and so manage, every other key of its tenant. */
export const ADMIN_SCOPE = "admin" satisfies Scope;

export function isAdminCapable(scopes: readonly string[]): boolean {
  return scopes.includes(ADMIN_SCOPE);
}

/**
 * The one rule for acting on a key (creating, changing, disabling, rotating, revoking, deleting it): the
 * caller must hold every Keywarden scope the key holds. Otherwise a `keys:write` key could rotate the
 * admin key and receive an admin successor, or disable it and lock its tenant out (OWASP API Security 2023
 * API5, broken function level authorisation; threat model case 25). Tenant custom scopes do not count: they
 * grant nothing inside Keywarden. The answer is 403, not 404: the key is no secret to this tenant's callers,
 * `keys:read` lists it anyway.
 */
export function assertMayManageKey(caller: { scopes: ReadonlySet<string> }, keyScopes: readonly string[]) {
  const beyond = scopesBeyondGrant(keyScopes, caller.scopes);
  if (beyond.length) {
    throw new ApiError(
      "FORBIDDEN",
      `This key holds scopes you do not hold (${beyond.join(", ")}): only a caller holding all of them may create or manage it.`,
    );
  }
}
