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

// The same operation at two paths: each mount needs its own operationId (OpenAPI 3.1, 4.8.10.1: unique).
const servicesRoute = (operationId: string) =>
  createRoute({
    method: "get",
    path: "/",
    operationId,
    security: [],
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
const catalogueRoutes = (operationId: string) =>
  createRouter().openapi(servicesRoute(operationId), (c) => {
    const { category } = c.req.valid("query");
    const services = listServices(category ? { category } : {});
    return c.json({ services: services.map(describeService), categories: [...SERVICE_CATEGORIES] }, 200);
  });
export const serviceRoutes = catalogueRoutes("listServices");
export const seedServiceRoutes = catalogueRoutes("listWizardServices");
