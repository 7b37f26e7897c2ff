import { z } from "zod";
import { requireField } from "../request";
import type { ServiceDefinition } from "../types";

// shopify.dev/docs/apps/build/authentication-authorization/access-tokens: a custom app's Admin API access
// token is `shpat_` + 32 hex, its API secret key `shpss_` + 32 hex; each shop lives at `<name>.myshopify.com`.
const SHOP_DOMAIN = "^[a-z0-9][a-z0-9-]*\\.myshopify\\.com$";
const Shop = z.object({
  shop: z.object({ myshopify_domain: z.string().optional(), name: z.string().optional() }),
});

export const shopify: ServiceDefinition = {
  id: "shopify",
  name: "Shopify",
  category: "payment",
  description: "A Shopify store's orders, products and customers through the Admin API.",
  docs_url:
    "https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/generate-app-access-tokens-admin",
  fields: [
    {
      name: "shop_domain",
      label: "Shop domain",
      secret: false,
      required: true,
      pattern: SHOP_DOMAIN,
      example: "example-store.myshopify.com",
    },
    {
      name: "access_token",
      label: "Admin API access token",
      secret: true,
      required: true,
      pattern: "^shpat_[a-f0-9]{32}$",
      example: "shpat_0123456789abcdef0123456789abcdef",
    },
    {
      name: "api_secret_key",
      label: "API secret key",
      secret: true,
      required: false,
      pattern: "^shpss_[a-f0-9]{32}$",
      example: "shpss_0123456789abcdef0123456789abcdef",
    },
  ],
  generatable: [],
  recommended_rotation_days: 180,
  // The host is the tenant's own shop, so the allow-list is a pattern that only myshopify.com hosts match.
  probe_hosts: [],
  probe_host_pattern: SHOP_DOMAIN,
  probe: {
    // shop.json reads the shop's own record and needs no access scope (shopify.dev/docs/api/admin-rest/latest/resources/shop).
    request: (fields) => {
      const shop = requireField(fields, "shop_domain");
      if (!new RegExp(SHOP_DOMAIN).test(shop)) throw new TypeError("probe needs a valid shop_domain field");
      return {
        method: "GET",
        url: `https://${shop}/admin/api/2025-01/shop.json`,
        headers: { "x-shopify-access-token": requireField(fields, "access_token") },
      };
    },
    interpret: (response) => {
      const shop = Shop.safeParse(response.json);
      if (response.status === 200 && shop.success) {
        return { status: "valid", reason: "authenticated", account: shop.data.shop.myshopify_domain ?? null };
      }
      if (response.status === 404) return { status: "invalid", reason: "shop_not_found" };
      return { status: "unknown", reason: "unexpected_response" };
    },
  },
};
