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

export async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { accept: "application/json" } };
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
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new Problem(res.status, data);
  return data;
}

export const wizardPath = (id, rest = "") => `/api/v1/wizard/${encodeURIComponent(id)}${rest}`;
