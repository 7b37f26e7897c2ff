// Keys: the list and each key's page (helper H5 builds these out).
import { renderSubject } from "./subject.js";

export const renderKeys = (page) => page("Keys");
export const renderKey = (page, id) => renderSubject(page, "keys", id);
