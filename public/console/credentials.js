// Credentials: the list and each credential's page (helper H5 builds these out).
import { renderSubject } from "./subject.js";

export const renderCredentials = (page) => page("Credentials");
export const renderCredential = (page, id) => renderSubject(page, "credentials", id);
