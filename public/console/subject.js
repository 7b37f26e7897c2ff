// The object an alert links to: a key or a credential, as the API shows it (never a secret).
import { api } from "../app/api.js";
import { dl, h } from "../app/dom.js";

const NAMES = { keys: "Key", credentials: "Credential" };

export async function renderSubject(page, kind, id) {
  const ui = page(`${NAMES[kind]} ${id}`);
  try {
    const item = await api("GET", `/api/v1/${kind}/${encodeURIComponent(id)}`);
    const rotation = item.rotation ?? {};
    ui.main.append(
      h(
        "div",
        { class: "card" },
        dl([
          ["Name", item.name ?? "—"],
          ...(kind === "keys"
            ? [
                ["Starts with", item.start ?? "—"],
                ["Enabled", String(item.enabled)],
                ["Expires", item.expires_at ?? "never"],
              ]
            : [
                ["Service", item.service],
                ["Environment", item.environment],
                ["Last live test", item.last_test?.status ?? item.last_test_status ?? "—"],
              ]),
          ["Next rotation", rotation.next_rotation_at ?? "not scheduled"],
          ["Rotation state", rotation.state ?? "—"],
        ]),
      ),
      h("p", {}, h("a", { href: "#/alerts", text: "All alerts" })),
    );
  } catch (err) {
    ui.fail(err);
  }
}
