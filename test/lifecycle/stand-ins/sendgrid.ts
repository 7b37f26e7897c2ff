/**
 * A stand-in for SendGrid's v3 API Keys API on https://api.sendgrid.com (twilio.com/docs/sendgrid/
 * api-reference/api-keys): Bearer keys `SG.<api_key_id>.<secret>` whose scopes gate each endpoint
 * (`api_keys.read` / `.create` / `.delete`, twilio.com/docs/sendgrid/api-reference/api-key-permissions);
 * `POST /v3/api_keys` JSON `{ name, scopes? }` → 201 `{ api_key, api_key_id, name, scopes }` (no scopes:
 * Full Access; 403 past 100 keys), `GET /v3/api_keys` → `{ result: [{ api_key_id, name }] }`,
 * `GET /v3/api_keys/{id}` → `{ api_key_id, name, scopes }`, `DELETE /v3/api_keys/{id}` → 204 or 404.
 * Errors are `{ errors: [{ field, message }] }`.
 */
import { HttpResponse, http } from "msw";
import {
  BASE64URL,
  FaultQueue,
  type MswRequest,
  type Received,
  randomFrom,
  received,
  withFault,
} from "./common";

export interface SendgridKey {
  id: string;
  name: string;
  key: string;
  scopes: string[];
}

export type SendgridOperation = "list" | "read" | "create" | "delete";

/** A Full Access key's scopes, abridged to what the stand-in checks and a few others. */
export const FULL_ACCESS = [
  "api_keys.create",
  "api_keys.delete",
  "api_keys.read",
  "api_keys.update",
  "mail.send",
  "templates.read",
  "user.profile.read",
];
export const ROTATOR_SCOPES = ["api_keys.create", "api_keys.delete", "api_keys.read"];
const MAX_KEYS = 100;

export function sendgridError(message: string, status: number, field: string | null = null): Response {
  return HttpResponse.json({ errors: [{ field, message }] }, { status });
}

export class SendgridStandIn {
  readonly keys: SendgridKey[] = [];
  readonly faults = new FaultQueue();
  readonly log: Received[] = [];

  addKey(name: string, scopes: string[]): SendgridKey {
    const id = randomFrom(BASE64URL, 22);
    const key = { id, name, key: `SG.${id}.${randomFrom(BASE64URL, 43)}`, scopes: [...scopes] };
    this.keys.push(key);
    return key;
  }

  keysNamed(name: string): SendgridKey[] {
    return this.keys.filter((key) => key.name === name);
  }

  handlers() {
    const base = "https://api.sendgrid.com/v3/api_keys";
    return [
      http.get(base, ({ request }) => this.list(request)),
      http.post(base, ({ request }) => this.create(request)),
      http.get(`${base}/:id`, ({ request, params }) => this.read(request, String(params.id))),
      http.delete(`${base}/:id`, ({ request, params }) => this.remove(request, String(params.id))),
    ];
  }

  /** The calling key, or the documented 401/403 answer when it is unknown or lacks `scope`. */
  private caller(request: MswRequest, scope: string): SendgridKey | Response {
    const token = /^Bearer (.+)$/.exec(request.headers.get("authorization") ?? "")?.[1];
    const key = this.keys.find((entry) => entry.key === token);
    if (!key) return sendgridError("authorization required", 401);
    if (!key.scopes.includes(scope)) return sendgridError("access forbidden", 403);
    return key;
  }

  private async list(request: MswRequest): Promise<Response> {
    this.log.push(await received("list", request));
    const caller = this.caller(request, "api_keys.read");
    if (caller instanceof Response) return caller;
    const limit = Number(new URL(request.url).searchParams.get("limit") ?? MAX_KEYS);
    return withFault(this.faults.take("list"), () =>
      HttpResponse.json({
        result: this.keys.slice(0, limit).map((key) => ({ api_key_id: key.id, name: key.name })),
      }),
    );
  }

  private async read(request: MswRequest, id: string): Promise<Response> {
    this.log.push(await received("read", request));
    const caller = this.caller(request, "api_keys.read");
    if (caller instanceof Response) return caller;
    return withFault(this.faults.take("read"), () => {
      const key = this.keys.find((entry) => entry.id === id);
      if (!key) return sendgridError("unable to find API Key", 404);
      return HttpResponse.json({ api_key_id: key.id, name: key.name, scopes: key.scopes });
    });
  }

  private async create(request: MswRequest): Promise<Response> {
    const log = await received("create", request);
    this.log.push(log);
    const caller = this.caller(request, "api_keys.create");
    if (caller instanceof Response) return caller;
    if (log.headers["content-type"] !== "application/json") {
      return sendgridError("Content-Type should be application/json", 415);
    }
    let body: { name?: unknown; scopes?: unknown };
    try {
      body = JSON.parse(log.body) as { name?: unknown; scopes?: unknown };
    } catch {
      return sendgridError("Bad Request", 400);
    }
    if (typeof body.name !== "string" || body.name === "") {
      return sendgridError("missing required argument", 400, "name");
    }
    const scopes = body.scopes === undefined ? FULL_ACCESS : body.scopes;
    if (!Array.isArray(scopes) || !scopes.every((scope) => typeof scope === "string")) {
      return sendgridError("scopes must be an array of strings", 400, "scopes");
    }
    if (this.keys.length >= MAX_KEYS) return sendgridError("Cannot create more than 100 API keys", 403);
    const name = body.name;
    return withFault(this.faults.take("create"), () => {
      const key = this.addKey(name, scopes);
      return HttpResponse.json(
        { api_key: key.key, api_key_id: key.id, name: key.name, scopes: key.scopes },
        { status: 201 },
      );
    });
  }

  private async remove(request: MswRequest, id: string): Promise<Response> {
    this.log.push(await received("delete", request));
    const caller = this.caller(request, "api_keys.delete");
    if (caller instanceof Response) return caller;
    return withFault(this.faults.take("delete"), () => {
      const index = this.keys.findIndex((entry) => entry.id === id);
      if (index < 0) return sendgridError("unable to find API Key", 404);
      this.keys.splice(index, 1);
      return new HttpResponse(null, { status: 204 });
    });
  }
}
