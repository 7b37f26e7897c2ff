/**
 * A stand-in for Twilio's Key resource v1 on https://iam.twilio.com (twilio.com/docs/iam/api-keys/
 * key-resource-v1): `POST /v1/Keys` (form AccountSid, FriendlyName up to 64 characters) → 201 with the
 * secret, `GET /v1/Keys?AccountSid=&PageSize=` → `{ keys, meta }`, `DELETE /v1/Keys/{sid}` → 204 or 404
 * (20404). Only the account's Auth Token may manage keys (Basic `<AccountSid>:<AuthToken>`); anything else
 * is 401 (20003). Errors are `{ code, message, more_info, status }`. It also answers the account's Balance
 * (`GET api.twilio.com/2010-04-01/Accounts/{sid}/Balance.json`) for its API keys, which is the
 * `twilio-api-key` catalogue probe, so a minted key can be shown to work.
 */
import { HttpResponse, http } from "msw";
import {
  BASE62,
  basicCredentials,
  FaultQueue,
  HEX,
  type MswRequest,
  type Received,
  randomFrom,
  received,
  withFault,
} from "./common";

export interface TwilioKey {
  sid: string;
  friendlyName: string;
  secret: string;
}

export type TwilioOperation = "list" | "create" | "delete";

export function twilioError(code: number, message: string, status: number): Response {
  return HttpResponse.json(
    { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status },
    { status },
  );
}

export class TwilioStandIn {
  readonly accountSid = `AC${randomFrom(HEX, 32)}`;
  readonly authToken = randomFrom(HEX, 32);
  readonly keys: TwilioKey[] = [];
  readonly faults = new FaultQueue();
  readonly log: Received[] = [];
  /** Page size the list answers with at most, whatever PageSize asks (to exercise paging). */
  pageLimit = 1000;

  /** A key made beforehand (in the Console, say). */
  addKey(friendlyName: string): TwilioKey {
    const key = { sid: `SK${randomFrom(HEX, 32)}`, friendlyName, secret: randomFrom(BASE62, 32) };
    this.keys.push(key);
    return key;
  }

  keysNamed(friendlyName: string): TwilioKey[] {
    return this.keys.filter((key) => key.friendlyName === friendlyName);
  }

  handlers() {
    return [
      http.get("https://iam.twilio.com/v1/Keys", ({ request }) => this.list(request)),
      http.post("https://iam.twilio.com/v1/Keys", ({ request }) => this.create(request)),
      http.delete("https://iam.twilio.com/v1/Keys/:sid", ({ request, params }) =>
        this.remove(request, String(params.sid)),
      ),
      http.get("https://api.twilio.com/2010-04-01/Accounts/:sid/Balance.json", ({ request, params }) =>
        this.balance(request, String(params.sid)),
      ),
    ];
  }

  private authorized(request: MswRequest): boolean {
    const credentials = basicCredentials(request.headers.get("authorization") ?? undefined);
    return credentials?.[0] === this.accountSid && credentials[1] === this.authToken;
  }

  private async list(request: MswRequest): Promise<Response> {
    this.log.push(await received("list", request));
    if (!this.authorized(request)) return twilioError(20003, "Authenticate", 401);
    const url = new URL(request.url);
    if (url.searchParams.get("AccountSid") !== this.accountSid) {
      return twilioError(20404, "The requested resource was not found", 404);
    }
    const size = Math.min(Number(url.searchParams.get("PageSize") ?? 50), this.pageLimit);
    const page = Number(url.searchParams.get("Page") ?? 0);
    return withFault(this.faults.take("list"), () => {
      const slice = this.keys.slice(page * size, (page + 1) * size);
      const more = (page + 1) * size < this.keys.length;
      const pageUrl = (n: number) =>
        `https://iam.twilio.com/v1/Keys?AccountSid=${this.accountSid}&PageSize=${size}&Page=${n}`;
      return HttpResponse.json({
        keys: slice.map((key) => ({
          sid: key.sid,
          friendly_name: key.friendlyName,
          date_created: "Mon, 13 Jun 2016 22:50:08 +0000",
          date_updated: "Mon, 13 Jun 2016 22:50:08 +0000",
          flags: ["rest_api", "signing"],
        })),
        meta: {
          page,
          page_size: size,
          first_page_url: pageUrl(0),
          previous_page_url: page > 0 ? pageUrl(page - 1) : null,
          url: pageUrl(page),
          next_page_url: more ? pageUrl(page + 1) : null,
          key: "keys",
        },
      });
    });
  }

  private async create(request: MswRequest): Promise<Response> {
    const log = await received("create", request);
    this.log.push(log);
    if (!this.authorized(request)) return twilioError(20003, "Authenticate", 401);
    if (!log.headers["content-type"]?.startsWith("application/x-www-form-urlencoded")) {
      return twilioError(20001, "Invalid content type", 400);
    }
    const form = new URLSearchParams(log.body);
    if (form.get("AccountSid") !== this.accountSid) {
      return twilioError(20404, "The requested resource was not found", 404);
    }
    const friendlyName = form.get("FriendlyName") ?? "";
    if (friendlyName.length > 64) return twilioError(21201, "FriendlyName is too long", 400);
    return withFault(this.faults.take("create"), () => {
      const key = this.addKey(friendlyName);
      return HttpResponse.json(
        {
          sid: key.sid,
          friendly_name: key.friendlyName,
          date_created: "Mon, 13 Jun 2016 22:50:08 +0000",
          date_updated: "Mon, 13 Jun 2016 22:50:08 +0000",
          secret: key.secret,
          policy: null,
        },
        { status: 201 },
      );
    });
  }

  private async remove(request: MswRequest, sid: string): Promise<Response> {
    this.log.push(await received("delete", request));
    if (!this.authorized(request)) return twilioError(20003, "Authenticate", 401);
    return withFault(this.faults.take("delete"), () => {
      const index = this.keys.findIndex((key) => key.sid === sid);
      if (index < 0) return twilioError(20404, "The requested resource was not found", 404);
      this.keys.splice(index, 1);
      return new HttpResponse(null, { status: 204 });
    });
  }

  private balance(request: MswRequest, accountSid: string): Response {
    const credentials = basicCredentials(request.headers.get("authorization") ?? undefined);
    const key = this.keys.find((entry) => entry.sid === credentials?.[0]);
    if (!key || key.secret !== credentials?.[1] || accountSid !== this.accountSid) {
      return twilioError(20003, "Authenticate", 401);
    }
    return HttpResponse.json({ account_sid: this.accountSid, balance: "12.34", currency: "USD" });
  }
}
