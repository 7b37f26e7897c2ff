// A one-route Hono app behind this app's own edge middleware (request id and headers, src/http/edge-headers.ts),
// answering /healthz's prepared answer (src/http/security-headers.ts). bench/run.mjs bundles it next to the worker
// (never deployed) and bench/worker-entry.mjs serves it at `GET /__bench/hono`. /healthz against it shows what the
// full app's router over every route adds to Hono's own dispatch and the middleware step.
import { Hono } from "hono";
import type { AppEnv } from "../src/env";
import { edgeHeaders } from "../src/http/edge-headers";
import { preparedJson } from "../src/http/security-headers";

export const HONO_FLOOR_PATH = "/__bench/hono";

export const honoFloor = new Hono<AppEnv>()
  .use(edgeHeaders)
  .get(HONO_FLOOR_PATH, (c) => preparedJson(c, { status: "ok" as const }, 200));
