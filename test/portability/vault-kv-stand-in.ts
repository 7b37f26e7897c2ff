/**
 * An in-memory HashiCorp Vault KV version 2 engine for msw, faithful to the documented HTTP API
 * (developer.hashicorp.com/vault/api-docs/secret/kv/kv-v2) and to what the KV plugin answers
 * (hashicorp/vault-plugin-secrets-kv path_data.go, path_metadata.go) through Vault's HTTP layer:
 * - read secret version, `GET /v1/:mount/data/:path[?version=N]`: 200 `{ data: { data, metadata:
 *   { created_time, custom_metadata, deletion_time: "", destroyed: false, version } } }` in Vault's response
 *   envelope; no secret or no such version: 404 `{"errors":[]}`; a soft-deleted or destroyed version: 404
 *   with the envelope, `data.data` null and its metadata (deletion_time set, or destroyed true);
 * - list, `LIST /v1/:mount/metadata/:path` or `GET …?list=true`: 200 `{ data: { keys } }`, sorted, folders
 *   ending with `/`; an empty or missing folder: 404 `{"errors":[]}`;
 * - X-Vault-Token checked on every request and per path (`deny(prefix)` withholds read and list below a
 *   prefix): 403 `{"errors":["permission denied"]}`; X-Vault-Namespace when the stand-in has a namespace;
 * - a mount it does not have: 404 `no handler for route`; `seal()`: 503 `{"errors":["Vault is sealed"]}`;
 *   `goUnreachable()`: every request fails at the network level; `faults.next("read" | "list", fault)` shapes
 *   one answer (see ../lifecycle/stand-ins/common.ts), e.g. a 307 redirect. The HTTP layer (all but the
 *   engine's routes, token check and answers) is ../vault/vault-stand-in.ts, shared with the transit stand-in.
 */
import type { MswRequest } from "../lifecycle/stand-ins/common";
import { VaultStandIn, vaultEnvelope, vaultError } from "../vault/vault-stand-in";

export type KvOperation = "read" | "list";

export interface KvStandInOptions {
  /** https://host[:port], as the import's `address`. */
  addr: string;
  /** The token Vault accepts. */
  token: string;
  /** Default "secret". */
  mount?: string;
  /** When set, every request must carry X-Vault-Namespace with this value. */
  namespace?: string;
}

interface Version {
  data: Record<string, unknown>;
  createdTime: string;
  deletionTime: string;
  destroyed: boolean;
}

/** Vault's response envelope around `data`, with the status the plugin chose. */
function envelope(data: Record<string, unknown>, status = 200): Response {
  return vaultEnvelope({ data, mount_type: "kv" }, status);
}

interface KvRoute {
  operation: KvOperation;
  path: string;
}

export class VaultKvStandIn extends VaultStandIn<KvOperation, KvRoute> {
  readonly mount: string;
  private readonly secrets = new Map<string, Version[]>();
  private readonly denied: string[] = [];
  private clock = Date.UTC(2026, 0, 1);

  constructor(private readonly options: KvStandInOptions) {
    super(options.addr, options.namespace);
    this.mount = options.mount ?? "secret";
  }

  /** `POST /v1/:mount/data/:path`: a new version of the secret. Returns its version number. */
  put(path: string, data: Record<string, unknown>): number {
    const versions = this.secrets.get(path) ?? [];
    versions.push({
      data: structuredClone(data),
      createdTime: this.tick(),
      deletionTime: "",
      destroyed: false,
    });
    this.secrets.set(path, versions);
    return versions.length;
  }

  /** `DELETE /v1/:mount/data/:path`: soft-deletes the latest version. */
  softDelete(path: string): void {
    const latest = this.secrets.get(path)?.at(-1);
    if (latest) latest.deletionTime = this.tick();
  }

  /** `POST /v1/:mount/destroy/:path`: the version's data is gone for good. */
  destroy(path: string, version: number): void {
    const found = this.secrets.get(path)?.[version - 1];
    if (found) {
      found.destroyed = true;
      found.data = {};
    }
  }

  /** The token's policy no longer grants read or list on paths below `prefix`. */
  deny(prefix: string): void {
    this.denied.push(prefix);
  }

  private tick(): string {
    this.clock += 1000;
    return new Date(this.clock).toISOString();
  }

  protected authorized(route: KvRoute, request: MswRequest): boolean {
    return (
      request.headers.get("x-vault-token") === this.options.token &&
      !this.denied.some((prefix) => route.path.startsWith(prefix))
    );
  }

  protected answer(route: KvRoute, _request: MswRequest, url: URL): Response {
    return route.operation === "read"
      ? this.read(route.path, url.searchParams.get("version"))
      : this.list(route.path);
  }

  protected route(method: string, url: URL): KvRoute | null {
    const prefix = `/v1/${this.mount}/`;
    if (!url.pathname.startsWith(prefix)) return null;
    const rest = url.pathname.slice(prefix.length);
    const decode = (path: string) => path.split("/").map(decodeURIComponent).join("/");
    const listing = method === "LIST" || (method === "GET" && url.searchParams.get("list") === "true");
    if (rest.startsWith("metadata/") && listing) return { operation: "list", path: decode(rest.slice(9)) };
    // The plugin's data pattern takes no trailing slash.
    if (rest.startsWith("data/") && method === "GET" && !rest.endsWith("/")) {
      return { operation: "read", path: decode(rest.slice(5)) };
    }
    return null;
  }

  private read(path: string, versionParam: string | null): Response {
    const versions = this.secrets.get(path);
    if (!versions) return vaultError(404);
    const number = versionParam && Number(versionParam) > 0 ? Number(versionParam) : versions.length;
    const version = versions[number - 1];
    if (!version) return vaultError(404);
    const metadata = {
      created_time: version.createdTime,
      custom_metadata: null,
      deletion_time: version.deletionTime,
      destroyed: version.destroyed,
      version: number,
    };
    if (version.deletionTime !== "" || version.destroyed) return envelope({ data: null, metadata }, 404);
    return envelope({ data: structuredClone(version.data), metadata });
  }

  private list(folder: string): Response {
    const prefix = folder === "" || folder.endsWith("/") ? folder : `${folder}/`;
    const keys = new Set<string>();
    for (const path of this.secrets.keys()) {
      if (!path.startsWith(prefix)) continue;
      const rest = path.slice(prefix.length);
      const slash = rest.indexOf("/");
      keys.add(slash < 0 ? rest : rest.slice(0, slash + 1));
    }
    if (keys.size === 0) return vaultError(404);
    return envelope({ keys: [...keys].sort() });
  }
}
