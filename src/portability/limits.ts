/** The import route: the one API path whose body may exceed the app-wide 64 KiB cap (src/app.ts). */
export const IMPORT_PATH = "/api/v1/import";

/**
 * An import body carries a whole tenant's export. 16 MiB holds a tenant far past the inline-export limit
 * (1,000 credentials with all versions, 1,000 keys) and keeps the parsed bundle well inside an isolate's
 * 128 MB of memory.
 */
export const IMPORT_MAX_BODY_BYTES = 16 * 1024 * 1024;
