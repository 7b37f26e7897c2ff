/**
 * Format, strength and environment checks for a submitted credential set. Pure: no I/O, no clock.
 *
 * Every message names the field (by its label) and never contains a submitted value or a part of one,
 * so results can be logged, audited and returned in error bodies as they are (threat model case 18).
 */
import { findPlaceholder } from "./placeholders";
import { assessStrength, type StrengthReport } from "./strength";
import type { Environment, FieldSpec, SecurityLevel, ServiceDefinition } from "./types";

export { generateFieldValue } from "./generate";
export { maskValue } from "./mask";
export type { StrengthReport } from "./strength";

export interface ValidationOptions {
  environment: Environment;
  securityLevel: SecurityLevel;
}

export type DetectedMode = "test" | "live";

export interface FieldValidation {
  field: string;
  format_ok: boolean;
  /** `null` for identifiers (non-secret fields) and when the field was not submitted or is not a string. */
  strength: StrengthReport | null;
  errors: string[];
}

export interface EnvironmentCheck {
  /** What the values say, `null` when they say nothing (PayPal, AWS, ...). */
  detected: DetectedMode | null;
  /** A test key for production, or a live key for development. Staging accepts either. */
  mismatch: boolean;
  /** The mismatch blocks the credential at this security level. */
  refused: boolean;
}

export interface CredentialValidation {
  ok: boolean;
  /** One entry per catalogue field, in catalogue order. */
  fields: FieldValidation[];
  environment: EnvironmentCheck;
  /** Problems with the set as a whole (unknown fields, contradicting modes, a refused mismatch). */
  errors: string[];
  warnings: string[];
}

/** Far above any real provider credential; bounds the work done on hostile input. */
export const MAX_FIELD_LENGTH = 4096;

const compiled = new Map<string, RegExp>();

/** Catalogue patterns are fixed data, so this cache is bounded by the catalogue's size. */
function regex(source: string): RegExp {
  let re = compiled.get(source);
  if (!re) {
    re = new RegExp(source);
    compiled.set(source, re);
  }
  return re;
}

export function matchesPattern(field: FieldSpec, value: string): boolean {
  return regex(field.pattern).test(value);
}

function validateField(service: ServiceDefinition, field: FieldSpec, value: unknown): FieldValidation {
  const result: FieldValidation = { field: field.name, format_ok: false, strength: null, errors: [] };
  if (value === undefined || value === null || value === "") {
    if (field.required) result.errors.push(`${field.label} is required`);
    else result.format_ok = true;
    return result;
  }
  if (typeof value !== "string") {
    result.errors.push(`${field.label} must be a string`);
    return result;
  }
  if (value.length > MAX_FIELD_LENGTH) {
    result.errors.push(`${field.label} is longer than ${MAX_FIELD_LENGTH} characters`);
    return result;
  }
  // Strength is a property of secrets; an identifier such as a region or shop domain has none to judge.
  if (field.secret) result.strength = assessStrength(value);
  if (value.trim() !== value) {
    result.errors.push(`${field.label} has leading or trailing whitespace`);
  }
  result.format_ok = matchesPattern(field, value);
  if (!result.format_ok) {
    result.errors.push(
      `${field.label} does not match the ${service.name} format (expected the shape of ${field.example})`,
    );
  }
  const placeholder = findPlaceholder(value, field.secret);
  if (placeholder === "obvious_run") {
    result.errors.push(`${field.label} contains a long repeated or sequential run, not a real credential`);
  } else if (placeholder !== null) {
    result.errors.push(
      `${field.label} looks like a placeholder or documentation example, not a real credential`,
    );
  }
  return result;
}

interface ModeDetection {
  detected: DetectedMode | null;
  conflict: boolean;
}

/** Reads test/live from every field that carries a marker; fields that disagree are a conflict. */
export function detectMode(
  service: ServiceDefinition,
  fields: Readonly<Record<string, unknown>>,
): ModeDetection {
  const seen = new Set<DetectedMode>();
  for (const field of service.fields) {
    const value = Object.hasOwn(fields, field.name) ? fields[field.name] : undefined;
    if (!field.environment_marker || typeof value !== "string" || value.length > MAX_FIELD_LENGTH) continue;
    if (regex(field.environment_marker.test).test(value)) seen.add("test");
    else if (regex(field.environment_marker.live).test(value)) seen.add("live");
  }
  if (seen.size > 1) return { detected: null, conflict: true };
  const [only] = seen;
  return { detected: only ?? null, conflict: false };
}

function environmentMismatch(detected: DetectedMode | null, environment: Environment): boolean {
  return (
    (detected === "test" && environment === "production") ||
    (detected === "live" && environment === "development")
  );
}

export function validateCredential(
  service: ServiceDefinition,
  fields: Readonly<Record<string, unknown>>,
  options: ValidationOptions,
): CredentialValidation {
  const errors: string[] = [];
  const warnings: string[] = [];

  const results = service.fields.map((field) =>
    validateField(service, field, Object.hasOwn(fields, field.name) ? fields[field.name] : undefined),
  );

  // Unknown names are not echoed either: a pasted secret can end up as a JSON key.
  const known = new Set(service.fields.map((field) => field.name));
  const unknownCount = Object.keys(fields).filter((name) => !known.has(name)).length;
  if (unknownCount > 0) {
    errors.push(
      `${unknownCount} unknown field(s) submitted; ${service.name} takes only: ${[...known].join(", ")}`,
    );
  }

  const mode = detectMode(service, fields);
  if (mode.conflict) errors.push(`the ${service.name} fields disagree on test or live mode`);

  const mismatch = environmentMismatch(mode.detected, options.environment);
  // A test key in production silently processes nothing; a live key in development moves real money.
  // Basic only warns; enhanced and enterprise refuse (the tenant chose the stricter policy).
  const refused = mismatch && options.securityLevel !== "basic";
  if (mismatch) {
    const message = `a ${mode.detected} ${service.name} credential is being stored for ${options.environment}`;
    (refused ? errors : warnings).push(message);
  }

  const ok = errors.length === 0 && results.every((result) => result.errors.length === 0);
  return {
    ok,
    fields: results,
    environment: { detected: mode.detected, mismatch, refused },
    errors,
    warnings,
  };
}
