import { createRoute, z } from "@hono/zod-openapi";
import { preparedJson } from "../http/security-headers";
import { createRouter, jsonContent } from "../openapi/shared";

const health = createRoute({
  method: "get",
  path: "/healthz",
  operationId: "getHealth",
  security: [],
  tags: ["Operations"],
  summary: "Liveness. Touches no storage, so it stays cheap and says nothing about tenants.",
  responses: { 200: jsonContent(z.object({ status: z.literal("ok") }), "Alive.") },
});

export const healthRoutes = createRouter().openapi(health, (c) =>
  preparedJson(c, { status: "ok" as const }, 200),
);
