import type { AlertSubjectType } from "./alert-kinds";

/** Console pages a message can link to (public/console: hash routes). */
const PAGES: Partial<Record<AlertSubjectType | "alert", string>> = {
  alert: "alerts",
  key: "keys",
  credential: "credentials",
};

/**
 * The console page of an alert, key or credential: `${PUBLIC_ORIGIN}/console/#/alerts/<id>`. With no
 * PUBLIC_ORIGIN configured (local development) the link is the path alone. Null for a subject without a
 * page of its own (a service, the tenant, a channel): its message links to the alert instead.
 */
export function consoleLink(
  publicOrigin: string,
  type: AlertSubjectType | "alert",
  id: string,
): string | null {
  const page = PAGES[type];
  if (!page) return null;
  return `${originOf(publicOrigin)}/console/#/${page}/${encodeURIComponent(id)}`;
}

/** The configured origin as scheme://host[:port], or "" when it is unset or not a URL. */
function originOf(publicOrigin: string): string {
  if (!publicOrigin) return "";
  try {
    return new URL(publicOrigin).origin;
  } catch {
    return "";
  }
}
