// The least a Hono app can cost with this app's edge controls: one route, behind the app's own edge middleware
// (request id and headers, src/http/edge-headers.ts), answering /healthz's prepared answer
// (src/http/security-headers.ts). bench/run.mjs bundles it next to the worker (never deployed) and
// bench/worker-entry.mjs serves it at `GET /__bench/hono`: what the full app adds over it is its own router over
// every route, and the rest of its dispatch.
import { Hono } from "hono";
import type { AppEnv } from "../src/env";
import { edgeHeaders } from "../src/http/edge-headers";
import { preparedJson } from "../src/http/security-headers";

export const HONO_FLOOR_PATH = "/__bench/hono";

export const honoFloor = new Hono<AppEnv>()
  .use(edgeHeaders)
  .get(HONO_FLOOR_PATH, (c) => preparedJson(c, { status: "ok" as const }, 200));
