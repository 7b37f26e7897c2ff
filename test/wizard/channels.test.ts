import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { sendTestAlert } from "../../src/monitoring/send-test-alert";
import { network } from "../setup/network";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

const alert = { tenantName: "Acme", text: "test alert" };
const localEnv = { EMAIL: env.EMAIL, ALERT_FROM_ADDRESS: env.ALERT_FROM_ADDRESS };

describe("alert channels send through their real delivery paths", () => {
  it("posts a Slack incoming-webhook message as JSON text", async () => {
    let body: unknown;
    network.use(
      http.post("https://hooks.slack.com/services/T000/B000/XXXX", async ({ request }) => {
        body = await request.json();
        return new HttpResponse("ok");
      }),
    );
    const url = "https://hooks.slack.com/services/T000/B000/XXXX";
    const result = await sendTestAlert(
      localEnv,
      { kind: "slack", name: "s", webhook_url: url },
      { webhook_url: url },
      alert,
    );
    expect(result).toMatchObject({ delivered: true, status: 200 });
    expect(body).toEqual({ text: "test alert" });
  });

  it("sends an SMS through Twilio's Messages API with basic auth and a form body", async () => {
    const sid = `AC${"0a".repeat(16)}`;
    const token = "f".repeat(32);
    let seen: { auth: string | null; form: URLSearchParams } | undefined;
    network.use(
      http.post(`https://api.twilio.com/2010-04-01/Accounts/${sid}/Messages.json`, async ({ request }) => {
        seen = {
          auth: request.headers.get("authorization"),
          form: new URLSearchParams(await request.text()),
        };
        return HttpResponse.json({ sid: "SM123", status: "queued" }, { status: 201 });
      }),
    );
    const result = await sendTestAlert(
      localEnv,
      {
        kind: "sms",
        name: "p",
        to: "+14155550100",
        from: "+14155550101",
        twilio_account_sid: sid,
        twilio_auth_token: token,
      },
      { twilio_auth_token: token },
      alert,
    );
    expect(result).toMatchObject({ delivered: true, status: 201 });
    expect(seen?.auth).toBe(`Basic ${btoa(`${sid}:${token}`)}`);
    expect(Object.fromEntries(seen?.form ?? [])).toEqual({
      To: "+14155550100",
      From: "+14155550101",
      Body: "test alert",
    });
  });

  it("reports a provider rejection and a timeout without throwing", async () => {
    network.use(
      http.post(
        "https://hooks.slack.com/services/T1/B1/Y",
        () => new HttpResponse("invalid_token", { status: 403 }),
      ),
    );
    const url = "https://hooks.slack.com/services/T1/B1/Y";
    expect(
      await sendTestAlert(
        localEnv,
        { kind: "slack", name: "s", webhook_url: url },
        { webhook_url: url },
        alert,
      ),
    ).toEqual({
      delivered: false,
      status: 403,
      reason: "rejected",
    });
  });

  it("sends e-mail through the send_email binding", async () => {
    const send = vi.fn(async () => {});
    const result = await sendTestAlert(
      { ...localEnv, EMAIL: { send } as unknown as SendEmail },
      { kind: "email", name: "ops", to: "ops@example.com" },
      {},
      alert,
    );
    expect(result).toEqual({ delivered: true });
    const message = (send.mock.calls[0] as unknown[] | undefined)?.[0] as { from: string; to: string };
    expect(message.from).toBe("alerts@keywarden.dev");
    expect(message.to).toBe("ops@example.com");
  });
});
