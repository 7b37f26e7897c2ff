/**
 * Pieces every provider stand-in shares: random ids in the provider's documented shapes, the faults a test
 * can queue for one operation, and the log of what the provider received.
 */
import { type DefaultBodyType, HttpResponse, type StrictRequest } from "msw";

/** The request an msw resolver receives. */
export type MswRequest = StrictRequest<DefaultBodyType>;

export const UPPER_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
export const HEX = "0123456789abcdef";
export const BASE62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
export const BASE64URL = `${BASE62}_-`;
export const BASE64 = `${BASE62}+/`;

export function randomFrom(alphabet: string, length: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  return Array.from(bytes, (byte) => alphabet[byte % alphabet.length]).join("");
}

/**
 * What a queued fault does to the next request for one operation:
 * - `lose_answer`: the provider does the work, then the answer never arrives (a network error), as when a
 *   connection drops after the provider committed;
 * - `unreadable_answer`: the provider does the work and answers 2xx with a body that is not the documented one;
 * - a Response: answered instead, and the work is not done (an error, a throttle, a redirect).
 */
export type Fault = "lose_answer" | "unreadable_answer" | (() => Response);

/** One request as the stand-in saw it (header names lower case). */
export interface Received {
  operation: string;
  method: string;
  url: URL;
  headers: Record<string, string>;
  body: string;
}

export class FaultQueue {
  private readonly faults = new Map<string, Fault[]>();

  /** Applies `fault` to the next request for `operation`. */
  next(operation: string, fault: Fault): void {
    this.faults.set(operation, [...(this.faults.get(operation) ?? []), fault]);
  }

  take(operation: string): Fault | undefined {
    const queue = this.faults.get(operation) ?? [];
    const fault = queue.shift();
    this.faults.set(operation, queue);
    return fault;
  }
}

/**
 * Runs `work` unless a queued fault answers instead, then shapes the answer as the fault says. `work`
 * returns the documented success response.
 */
export async function withFault(
  fault: Fault | undefined,
  work: () => Response | Promise<Response>,
): Promise<Response> {
  if (typeof fault === "function") return fault();
  const response = await work();
  if (fault === "lose_answer") return HttpResponse.error();
  if (fault === "unreadable_answer" && response.ok) {
    return new HttpResponse("<html>Service temporarily degraded</html>", {
      status: response.status,
      headers: { "content-type": "text/html" },
    });
  }
  return response;
}

export async function received(operation: string, request: MswRequest): Promise<Received> {
  const headers: Record<string, string> = {};
  request.headers.forEach((value, name) => {
    headers[name.toLowerCase()] = value;
  });
  return {
    operation,
    method: request.method,
    url: new URL(request.url),
    headers,
    body: await bodyText(request),
  };
}

/** The body as UTF-8 text, read as bytes (workerd warns on `.text()` of a form body). */
export async function bodyText(request: MswRequest): Promise<string> {
  return new TextDecoder().decode(await request.clone().arrayBuffer());
}

export function basicCredentials(header: string | undefined): [string, string] | null {
  const match = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header ?? "");
  if (!match?.[1]) return null;
  const decoded = atob(match[1]);
  const colon = decoded.indexOf(":");
  return colon < 0 ? null : [decoded.slice(0, colon), decoded.slice(colon + 1)];
}
