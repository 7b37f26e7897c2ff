import { createRouter } from "../openapi/shared";

/** The seed's documented address of the wizard; the worker runs first here (wrangler.toml run_worker_first). */
export const SEED_WIZARD_PATH = "/admin/wizards/api-key-management";

/**
 * Serves the wizard page itself (not a redirect, so the seed's links and bookmarks keep working). It is
 * answered by the worker rather than the assets layer so the page gets the app's secureHeaders CSP
 * (frame-ancestors 'none' against clickjacking, OWASP Clickjacking Defense CS), exactly as at `/`.
 * The page references its assets by absolute paths, so it works from any path.
 */
export const seedPageRoutes = createRouter().get(SEED_WIZARD_PATH, async (c) => {
  const page = await c.env.ASSETS.fetch(new Request(new URL("/", c.req.url)));
  // A fetched Response has immutable headers; copy it so the security-header middleware can set its own.
  return new Response(page.body, page);
});
