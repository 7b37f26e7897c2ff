// The console's one third-party browser module, served from our own origin (CSP `script-src 'self'`, no CDN):
// qrcode-generator (MIT), which draws the TOTP enrollment QR code in the page. Run by wrangler.toml's
// `[build] command`, so `wrangler dev`, `npm start` and `wrangler deploy` (and its dry run in `npm test`)
// all serve it; public/vendor/ is generated, not committed.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
// The package's own ES module build (its `exports.import`), resolved the way Node resolves it.
const source = fileURLToPath(import.meta.resolve("qrcode-generator"));
const target = join(root, "public", "vendor", "qrcode.mjs");

mkdirSync(dirname(target), { recursive: true });
copyFileSync(source, target);
console.log(`build-assets: ${target.slice(root.length + 1)}`);
