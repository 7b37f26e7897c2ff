/**
 * A tenant's external rotation endpoint, written the way the Standard Webhooks spec tells a receiver to
 * (standardwebhooks.com, "Verifying webhook authenticity"): it recomputes HMAC-SHA256 over
 * `${webhook-id}.${webhook-timestamp}.${body}` with the base64-decoded `whsec_` secret, compares it with the
 * `v1,` signature, refuses a timestamp more than 5 minutes off, and uses `webhook-id` to answer a repeated
 * delivery with what it answered the first time, so a retried "create" mints nothing twice.
 * This verifier is independent of Keywarden's signer, so a signing mistake shows up as a refusal.
 */
import { HttpResponse, http } from "msw";
import { type MswRequest, type Received, received } from "./common";

const TOLERANCE_S = 5 * 60;

export interface StepCall {
  id: string;
  step: string;
  body: Record<string, unknown>;
}

function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(atob(text), (char) => char.charCodeAt(0));
}

/** Standard Webhooks verification; true when one of the `v1,` signatures matches. */
export async function verifyStandardWebhook(secret: string, request: Received): Promise<boolean> {
  const id = request.headers["webhook-id"];
  const timestamp = request.headers["webhook-timestamp"];
  const signatures = request.headers["webhook-signature"];
  if (!id || !timestamp || !signatures) return false;
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE_S) return false;
  const key = await crypto.subtle.importKey(
    "raw",
    fromBase64(secret.replace(/^whsec_/, "")),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["verify"],
  );
  const signed = new TextEncoder().encode(`${id}.${timestamp}.${request.body}`);
  for (const entry of signatures.split(" ")) {
    const [version, signature] = entry.split(",");
    if (version !== "v1" || !signature) continue;
    if (await crypto.subtle.verify("HMAC", key, fromBase64(signature), signed)) return true;
  }
  return false;
}

export class ExternalEndpointStandIn {
  readonly log: Received[] = [];
  /** Accepted (verified) calls, in order. */
  readonly calls: StepCall[] = [];
  /** Keys this endpoint minted, by provider key id; removed when revoked. */
  readonly live = new Map<string, Record<string, string>>();
  private readonly answered = new Map<string, Response>();
  private minted = 0;
  /** When set, answers every call with this instead (after verifying the signature). */
  override: (() => Response) | null = null;

  constructor(
    readonly url: string,
    readonly secret: string,
    private readonly mint: (n: number) => Record<string, string>,
  ) {}

  get mintCount(): number {
    return this.minted;
  }

  handlers() {
    return [http.post(this.url, ({ request }) => this.handle(request))];
  }

  private async handle(request: MswRequest): Promise<Response> {
    const call = await received("step", request);
    this.log.push(call);
    if (!(await verifyStandardWebhook(this.secret, call))) {
      return HttpResponse.json({ error: "bad signature" }, { status: 401 });
    }
    if (this.override) return this.override();
    const id = call.headers["webhook-id"] ?? "";
    const previous = this.answered.get(id);
    if (previous) return previous.clone();
    const body = JSON.parse(call.body) as Record<string, unknown>;
    this.calls.push({ id, step: String(body.step), body });
    let answer: Response;
    if (body.step === "create") {
      this.minted++;
      const fields = this.mint(this.minted);
      const providerKeyId = `ext-key-${this.minted}`;
      this.live.set(providerKeyId, fields);
      answer = HttpResponse.json({ fields, provider_key_id: providerKeyId });
    } else {
      if (body.step === "revoke" && typeof body.provider_key_id === "string") {
        this.live.delete(body.provider_key_id);
      }
      answer = new HttpResponse(null, { status: 204 });
    }
    this.answered.set(id, answer.clone());
    return answer;
  }
}
