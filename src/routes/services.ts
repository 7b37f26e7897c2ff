import { createRoute, z } from "@hono/zod-openapi";
import { describeService, listServices, SERVICE_CATEGORIES, type ServiceCategory } from "../catalog";
import { createRouter, jsonContent, problems } from "../openapi/shared";

const CategorySchema = z.enum(SERVICE_CATEGORIES as [ServiceCategory, ...ServiceCategory[]]);

const ServiceSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    category: CategorySchema,
    description: z.string(),
    docs_url: z.string(),
    fields: z.array(
      z.object({
        name: z.string(),
        label: z.string(),
        secret: z.boolean(),
        required: z.boolean(),
        pattern: z.string(),
        example: z.string(),
      }),
    ),
    generatable: z.array(z.object({ field: z.string(), length: z.number(), alphabet: z.string() })),
    recommended_rotation_days: z.number(),
    probe_hosts: z.array(z.string()),
  })
  .openapi("Service");

const servicesRoute = createRoute({
  method: "get",
  path: "/",
  tags: ["Services"],
  summary: "The service catalogue, optionally filtered by category",
  request: { query: z.object({ category: CategorySchema.optional() }) },
  responses: {
    200: jsonContent(
      z.object({ services: z.array(ServiceSchema), categories: z.array(z.string()) }),
      "Services.",
    ),
    ...problems("VALIDATION_FAILED"),
  },
});

/** The catalogue is public reference data: no tenant, no secrets. Mounted at the seed's path and under /api/v1. */
export const serviceRoutes = createRouter().openapi(servicesRoute, (c) => {
  const { category } = c.req.valid("query");
  const services = listServices(category ? { category } : {});
  return c.json({ services: services.map(describeService), categories: [...SERVICE_CATEGORIES] }, 200);
});
