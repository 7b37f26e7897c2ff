/**
 * What every Vault stand-in answers the same way, as Vault's HTTP layer does before a request reaches a
 * secrets engine (developer.hashicorp.com/vault/api-docs#http-status-codes):
 * - a path no engine serves: 404 `no handler for route "…". route entry not found.`;
 * - `seal()`: every request is 503 {"errors":["Vault is sealed"]}; `goUnreachable()`: every request fails at
 *   the network level (and is not logged);
 * - X-Vault-Namespace must match when the stand-in has a namespace, and the engine's token check: 403
 *   {"errors":["permission denied"]};
 * - `faults.next(operation, fault)` shapes one answer (see ../lifecycle/stand-ins/common.ts).
 * The engines (./transit-stand-in.ts, ../portability/vault-kv-stand-in.ts) route and answer.
 */
import { type HttpHandler, HttpResponse, http } from "msw";
import {
  FaultQueue,
  type MswRequest,
  type Received,
  received,
  withFault,
} from "../lifecycle/stand-ins/common";

/** Vault's HTTP layer's messages, verbatim. */
export const VAULT_HTTP_MESSAGES = {
  permissionDenied: "permission denied",
  sealed: "Vault is sealed",
} as const;

export function vaultError(status: number, ...errors: string[]): Response {
  return HttpResponse.json({ errors }, { status });
}

/** Vault's response envelope around `data` (and `auth`, for a login), with the status the engine chose. */
export function vaultEnvelope(
  body: { data: Record<string, unknown> | null; auth?: Record<string, unknown>; mount_type?: string },
  status = 200,
): Response {
  return HttpResponse.json(
    {
      request_id: crypto.randomUUID(),
      lease_id: "",
      renewable: false,
      lease_duration: 0,
      data: body.data,
      wrap_info: null,
      warnings: null,
      auth: body.auth ?? null,
      ...(body.mount_type === undefined ? {} : { mount_type: body.mount_type }),
    },
    { status },
  );
}

export abstract class VaultStandIn<Operation extends string, Route extends { operation: Operation }> {
  readonly handlers: HttpHandler[];
  readonly faults = new FaultQueue();
  /** Every request that reached the stand-in (an unreachable Vault receives none). */
  readonly log: Received[] = [];
  private sealed = false;
  private unreachable = false;

  protected constructor(
    addr: string,
    private readonly namespace: string | undefined,
  ) {
    const origin = new URL(addr).origin;
    this.handlers = [http.all(`${origin}/v1/*`, ({ request }) => this.handle(request))];
  }

  seal(): void {
    this.sealed = true;
  }

  unseal(): void {
    this.sealed = false;
  }

  goUnreachable(): void {
    this.unreachable = true;
  }

  comeBack(): void {
    this.unreachable = false;
  }

  /** Requests that reached the stand-in for one operation. */
  count(operation: Operation): number {
    return this.log.filter((entry) => entry.operation === operation).length;
  }

  /** The engine operation a request is, or null (Vault's 404 "no handler for route"). */
  protected abstract route(method: string, url: URL): Route | null;
  /** Whether the request's token may run the operation (403 "permission denied" otherwise). */
  protected abstract authorized(route: Route, request: MswRequest): boolean;
  /** The engine's answer to an authorized request. */
  protected abstract answer(route: Route, request: MswRequest, url: URL): Response | Promise<Response>;

  private async handle(request: MswRequest): Promise<Response> {
    if (this.unreachable) return HttpResponse.error();
    const url = new URL(request.url);
    const route = this.route(request.method, url);
    if (!route) {
      const path = url.pathname.replace(/^\/v1\//, "");
      return vaultError(404, `no handler for route "${path}". route entry not found.`);
    }
    this.log.push(await received(route.operation, request));
    if (this.sealed) return vaultError(503, VAULT_HTTP_MESSAGES.sealed);
    if (this.namespace !== undefined && request.headers.get("x-vault-namespace") !== this.namespace) {
      return vaultError(403, VAULT_HTTP_MESSAGES.permissionDenied);
    }
    if (!this.authorized(route, request)) return vaultError(403, VAULT_HTTP_MESSAGES.permissionDenied);
    return withFault(this.faults.take(route.operation), () => this.answer(route, request, url));
  }
}
