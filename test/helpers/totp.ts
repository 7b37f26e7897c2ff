import { expect } from "vitest";
import { fromBase32, stepAt, totpAt } from "../../src/auth/totp";
import { callJson } from "./api";

/**
 * Enrolls `key` in TOTP and confirms it with the code of the current step, as an admin with an authenticator
 * app would. Returns the shared secret and the step the confirmation used: the next accepted code must be of
 * a later step.
 */
export async function enrollTotp(key: string) {
  const started = await callJson<{ secret: string }>("POST", "/api/v1/auth/totp/enroll", { key });
  expect(started.status).toBe(201);
  const secret = fromBase32(started.body.secret);
  const step = stepAt(Date.now());
  const confirmed = await callJson("POST", "/api/v1/auth/totp/confirm", {
    key,
    body: { code: await totpAt(secret, step) },
  });
  expect(confirmed.status).toBe(200);
  return { secret, step };
}
