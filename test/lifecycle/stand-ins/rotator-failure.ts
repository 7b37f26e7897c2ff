import { expect } from "vitest";
import { RotatorError } from "../../../src/lifecycle/rotators/provider-rotator";

/** The RotatorError a rotator call rejects with; fails the test if it resolves or throws anything else. */
export async function rotatorFailure(promise: Promise<unknown>): Promise<RotatorError> {
  const error = await promise.then(
    () => {
      throw new Error("expected a RotatorError");
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RotatorError);
  return error as RotatorError;
}
