// A tenant's own API on Workers, protected by Keywarden keys with @keywarden/hono. Every /orders route
// needs a key Keywarden verifies; reading needs `orders:read`, creating `orders:write`. The verdict (key id,
// scopes, metadata, remaining uses) is on c.var.keywarden, and answers carry the key's RateLimit fields.
import { type KeywardenVariables, keywardenAuth } from "@keywarden/hono";
import { Hono } from "hono";

type Bindings = {
  /** Keywarden's origin. */
  KEYWARDEN_URL: string;
  /** A key of the tenant with the `keys:verify` scope (a secret). */
  KEYWARDEN_ROOT_KEY: string;
};
type ServiceEnv = { Bindings: Bindings };

/** Keywarden verifies the caller's key and requires `scopes`; refusals are problem+json (401/403/429/503). */
const requireKey = (...scopes: string[]) =>
  keywardenAuth<ServiceEnv>((c) => ({
    baseUrl: c.env.KEYWARDEN_URL,
    rootKey: c.env.KEYWARDEN_ROOT_KEY,
    scopes,
  }));

const orders = [{ id: "ord_1", total_cents: 4_200 }];

const app = new Hono<ServiceEnv & { Variables: KeywardenVariables }>();

app.get("/", (c) => c.json({ service: "orders", docs: "Send Authorization: Bearer <your Keywarden key>." }));

app.get("/orders", requireKey("orders:read"), (c) =>
  c.json({ orders, caller: { key_id: c.var.keywarden.key_id, scopes: c.var.keywarden.scopes } }),
);

app.post("/orders", requireKey("orders:write"), (c) => {
  const order = { id: `ord_${orders.length + 1}`, total_cents: 0, created_by: c.var.keywarden.key_id };
  return c.json(order, 201);
});

export default app;
