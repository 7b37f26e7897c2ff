// The `wrangler dev` command line of `npm start`, kept apart from scripts/start.mjs so it can be tested.
import { parseEnv } from "node:util";

/**
 * Settings only local development may turn on (.dev.vars.example documents them). wrangler.toml never
 * sets them, and test/security/local-switches.test.ts proves the production configuration leaves them unset.
 */
export const LOCAL_SWITCHES = Object.freeze(["PROVIDER_STANDIN_ORIGIN", "ALLOW_LOOPBACK_WEBHOOKS"]);

/** .dev.vars is a dotenv file (wrangler reads it with dotenv); node's parser reads the same syntax. */
export function parseDevVars(text) {
  return parseEnv(text);
}

/**
 * `--var NAME:value` for each local switch set in .dev.vars. They must be passed on the command line because
 * wrangler.toml has `[secrets] required = [...]`: with a `secrets` block, wrangler dev loads from .dev.vars
 * only the names listed in `secrets.required` or `[vars]` and silently drops every other line
 * (getVarsForDev in wrangler's src/dev/dev-vars.ts). Declaring the switches in either list would put them
 * in the production configuration, so only these known names are forwarded; MASTER_KEY and BOOTSTRAP_TOKEN
 * stay in .dev.vars, out of the process list.
 */
export function localSwitchArgs(devVars) {
  return LOCAL_SWITCHES.filter((name) => devVars[name]).flatMap((name) => [
    "--var",
    `${name}:${devVars[name]}`,
  ]);
}

export function wranglerDevArgs({ host, port, devVars }) {
  return [
    "dev",
    "--ip",
    host,
    "--port",
    String(port),
    "--show-interactive-dev-session=false",
    ...localSwitchArgs(devVars),
  ];
}
