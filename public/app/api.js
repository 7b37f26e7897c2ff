// Same-origin JSON calls. The session is the HttpOnly cookie; the browser adds Origin to every write.

export class Problem extends Error {
  constructor(status, body) {
    super(body?.detail || body?.title || `Request failed (HTTP ${status})`);
    this.status = status;
    this.code = body?.code;
    this.title = body?.title;
    this.errors = Array.isArray(body?.errors) ? body.errors : [];
    this.requestId = body?.request_id;
  }
}

/** The header a step-up operation carries its two-factor code in (src/auth/step-up.ts TOTP_HEADER). */
export const TOTP_HEADER = "x-keywarden-totp";

/** `headers`: extra request headers (a step-up code, If-Match). */
export async function api(method, path, body, headers) {
  return (await apiResponse(method, path, body, headers)).data;
}

/** `api`, also returning the response headers (an ETag for a later If-Match). */
export async function apiResponse(method, path, body, headers = {}) {
  const init = { method, credentials: "same-origin", headers: { ...headers, accept: "application/json" } };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  init.signal = AbortSignal.timeout(30000);
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new Problem(0, {
      detail: e.name === "TimeoutError" ? "The server did not answer in time." : "Keywarden is unreachable.",
    });
  }
  if (res.status === 204) return { data: null, headers: res.headers };
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new Problem(res.status, data);
  return { data, headers: res.headers };
}

export const wizardPath = (id, rest = "") => `/api/v1/wizard/${encodeURIComponent(id)}${rest}`;
