/** Small request-building pieces the provider probes share, so no provider file repeats them. */
import { toBase64, utf8 } from "../crypto/encoding";
import type { CredentialFields } from "./types";

/** The value of a field the probe cannot run without. Names the field, never a value. */
export function requireField(fields: CredentialFields, name: string): string {
  const value = fields[name];
  if (value === undefined || value === "") throw new TypeError(`probe needs the ${name} field`);
  return value;
}

export function optionalField(fields: CredentialFields, name: string): string | undefined {
  const value = fields[name];
  return value === undefined || value === "" ? undefined : value;
}

/** RFC 7617 Basic credentials (user-id and password joined by a colon, UTF-8, base64). */
export function basicAuthorization(user: string, password: string): string {
  return `Basic ${toBase64(utf8(`${user}:${password}`))}`;
}

export function bearerAuthorization(token: string): string {
  return `Bearer ${token}`;
}

export const FORM_CONTENT_TYPE = "application/x-www-form-urlencoded";

export function formBody(params: Record<string, string>): string {
  return new URLSearchParams(params).toString();
}

/** Epoch seconds (what most providers send) to the epoch milliseconds the catalogue reports. */
export function secondsToMs(seconds: number): number {
  return seconds * 1000;
}
