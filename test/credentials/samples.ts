import { randomBase62 } from "../../src/crypto/random";

/** Real-shaped, random Stripe secret keys (never a real or documented key). */
export function stripeKey(mode: "test" | "live" = "test"): string {
  return `sk_${mode}_${randomBase62(32)}`;
}
