import { HTTPException } from "hono/http-exception";
import { IntegrityError } from "./crypto/envelope";
import type { AppEnv } from "./env";
import { ApiError, problemResponse } from "./errors";
import { apiBody } from "./http/body-limit";
import { edgeHeaders } from "./http/edge-headers";
import { createRouter } from "./openapi/shared";
import { alertRoutes } from "./routes/alerts";
import { auditRoutes } from "./routes/audit";
import { auditExportRoutes } from "./routes/audit-export";
import { authSessionRoutes } from "./routes/auth-session";
import { channelDeliveryRoutes } from "./routes/channel-deliveries";
import { complianceRoutes } from "./routes/compliance";
import { credentialRoutes } from "./routes/credentials";
import { dataKeyRotationRoutes } from "./routes/data-key-rotation";
import { eventRoutes } from "./routes/events";
import { exportRoutes } from "./routes/export";
import { healthRoutes } from "./routes/health";
import { keyDeliveryRoutes } from "./routes/key-delivery";
import { keyringRoutes } from "./routes/keyring";
import { keyRoutes } from "./routes/keys";
import { monitoringRoutes } from "./routes/monitoring";
import { seedPageRoutes } from "./routes/seed-pages";
import { seedServiceRoutes, serviceRoutes } from "./routes/services";
import { tenantErasureRoutes } from "./routes/tenant-erasure";
import { tenantRoutes } from "./routes/tenants";
import { twoFactorRoutes } from "./routes/two-factor";
import { usageRoutes } from "./routes/usage";
import { vaultImportRoutes } from "./routes/vault-import";
import { verifyRoutes } from "./routes/verify";
import { wizardRoutes } from "./routes/wizard";
import { wizardSeedRoutes } from "./routes/wizard-seed";

/** Logs what failed without the message text of driver errors, which can carry bound parameters. */
function describeError(error: unknown): Record<string, string> {
  if (!(error instanceof Error)) return { name: typeof error };
  // Integrity messages are fixed texts written by us ("wrapped key failed authentication"): safe and useful.
  if (error instanceof IntegrityError) return { name: error.name, detail: error.message };
  const cause = error.cause instanceof Error ? error.cause : undefined;
  return { name: error.name, cause: cause ? `${cause.name}: ${cause.message.slice(0, 200)}` : "" };
}

export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof IntegrityError) {
    return new ApiError(
      "INTEGRITY_ERROR",
      "Stored data could not be decrypted or failed its integrity check.",
    );
  }
  if (error instanceof HTTPException) {
    if (error.status === 400) return new ApiError("BAD_REQUEST", "The request body is not valid JSON.");
    if (error.status === 415)
      return new ApiError("UNSUPPORTED_MEDIA_TYPE", "Send the body as application/json.");
  }
  return new ApiError("INTERNAL", "Something went wrong. Quote the request id when reporting it.");
}

export function buildApp() {
  const app = createRouter();

  app.use(edgeHeaders);
  app.use("/api/*", apiBody);

  app.route("/", healthRoutes);
  app.route("/", seedPageRoutes);
  app.route("/api/v1/tenants", tenantRoutes);
  app.route("/api/v1/tenants", tenantErasureRoutes);
  app.route("/api/v1/keyring", keyringRoutes);
  app.route("/api/v1/keyring", dataKeyRotationRoutes);
  app.route("/api/v1/auth/session", authSessionRoutes);
  app.route("/api/v1/auth/totp", twoFactorRoutes);
  app.route("/api/v1/keys/verify", verifyRoutes);
  app.route("/api/v1/keys", keyRoutes);
  app.route("/api/v1/credentials", credentialRoutes);
  app.route("/api/v1/audit", auditRoutes);
  app.route("/api/v1/audit", auditExportRoutes);
  app.route("/api/v1/events", eventRoutes);
  app.route("/api/v1/alerts", alertRoutes);
  app.route("/api/v1/usage", usageRoutes);
  app.route("/api/v1/wizard", wizardRoutes);
  app.route("/api/v1", monitoringRoutes);
  app.route("/api/v1/compliance", complianceRoutes);
  app.route("/api/v1", exportRoutes);
  app.route("/api/v1/import/vault", vaultImportRoutes);
  app.route("/api/v1", channelDeliveryRoutes);
  app.route("/api/v1", keyDeliveryRoutes);
  // The seed's wizard API, kept at its documented paths; the catalogue is also a v1 resource.
  app.route("/api/wizard", wizardSeedRoutes);
  app.route("/api/wizard/api-keys/services", seedServiceRoutes);
  app.route("/api/v1/services", serviceRoutes);

  app.openAPIRegistry.registerComponent("securitySchemes", "bearerKey", {
    type: "http",
    scheme: "bearer",
    description: "An issued Keywarden key whose scopes allow the call.",
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "sessionCookie", {
    type: "apiKey",
    in: "cookie",
    name: "__Host-kw_session",
    description: "Wizard session from POST /api/v1/auth/session.",
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "bootstrapToken", {
    type: "http",
    scheme: "bearer",
    description: "The operator's BOOTSTRAP_TOKEN secret.",
  });
  app.doc31("/api/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "Keywarden API",
      version: "1.0.0",
      description: "Edge-native API keys and third-party credential vault. Errors are RFC 9457 problem+json.",
    },
    // Relative: the document is served by the deployment it describes, so clients resolve paths against it.
    servers: [{ url: "/", description: "This Keywarden deployment (the origin serving this document)" }],
  });

  app.notFound(() => {
    throw new ApiError("NOT_FOUND", "No such route.");
  });
  app.onError((error, c) => {
    const apiError = toApiError(error);
    if (apiError.code === "INTERNAL" || apiError.code === "INTEGRITY_ERROR") {
      console.error(
        JSON.stringify({ event: "request_failed", request_id: c.get("requestId"), ...describeError(error) }),
      );
    }
    return problemResponse(apiError, c.get("requestId") ?? "unknown");
  });
  return app;
}

export type App = ReturnType<typeof buildApp>;
export type { AppEnv };
