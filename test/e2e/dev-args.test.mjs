// `npm start` (scripts/start.mjs) builds its `wrangler dev` command line with scripts/dev-args.mjs. wrangler
// drops every .dev.vars line that wrangler.toml does not declare in `[secrets] required` or `[vars]`, so the
// local-only switches documented in .dev.vars.example reach the worker only as the `--var`s built here.
// The browser e2e (harness.mjs) starts wrangler with the same builder and relies on both switches.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { LOCAL_SWITCHES, parseDevVars, wranglerDevArgs } from "../../scripts/dev-args.mjs";

const EXAMPLE = readFileSync(new URL("../../.dev.vars.example", import.meta.url), "utf8");
const args = (devVarsText) =>
  wranglerDevArgs({ host: "127.0.0.1", port: 8799, devVars: parseDevVars(devVarsText) });

/** The `NAME:value` operands of every `--var`, as wrangler receives them. */
function cliVars(argv) {
  return argv.flatMap((arg, i) => (argv[i - 1] === "--var" ? [arg] : []));
}

/** What a developer does: remove the `# ` in front of the documented switch lines. */
function uncommentSwitches(text) {
  return text.replace(new RegExp(`^# (${LOCAL_SWITCHES.join("|")})=`, "gm"), "$1=");
}

describe("npm start's wrangler dev arguments (scripts/dev-args.mjs)", () => {
  test("forwards the switches a developer uncomments in .dev.vars.example as --var", () => {
    const uncommented = uncommentSwitches(EXAMPLE);
    assert.notEqual(
      uncommented,
      EXAMPLE,
      ".dev.vars.example still documents the switches as commented lines",
    );
    assert.deepEqual(cliVars(args(uncommented)), [
      "PROVIDER_STANDIN_ORIGIN:http://127.0.0.1:8788",
      "ALLOW_LOOPBACK_WEBHOOKS:true",
    ]);
  });

  test("passes no switch while they stay commented out, as in a fresh .dev.vars", () => {
    assert.deepEqual(cliVars(args(EXAMPLE)), []);
  });

  test("keeps MASTER_KEY, BOOTSTRAP_TOKEN and unknown names off the command line", () => {
    const argv = args(
      [
        "MASTER_KEY=Pi6D1bN9Swlets3J7d8X8XYF8JxaPauTdGs0vuTR+QM=",
        "BOOTSTRAP_TOKEN=0123456789abcdef0123456789abcdef",
        "PUBLIC_ORIGIN=https://attacker.example",
        "ALLOW_LOOPBACK_WEBHOOKS=true",
      ].join("\n"),
    );
    assert.deepEqual(cliVars(argv), ["ALLOW_LOOPBACK_WEBHOOKS:true"]);
    assert.ok(!argv.some((arg) => /Pi6D1bN9|0123456789abcdef|attacker/.test(arg)));
  });

  test("reads .dev.vars as dotenv does: quotes, export and trailing comments", () => {
    const devVars = parseDevVars(
      'export PROVIDER_STANDIN_ORIGIN="http://127.0.0.1:8788"\nALLOW_LOOPBACK_WEBHOOKS=true # local receiver\n',
    );
    assert.equal(devVars.PROVIDER_STANDIN_ORIGIN, "http://127.0.0.1:8788");
    assert.equal(devVars.ALLOW_LOOPBACK_WEBHOOKS, "true");
  });

  test("skips a switch set to an empty value", () => {
    assert.deepEqual(cliVars(args("ALLOW_LOOPBACK_WEBHOOKS=\nPROVIDER_STANDIN_ORIGIN=")), []);
  });

  test("serves on the given loopback address and port", () => {
    const argv = args("");
    assert.equal(argv[0], "dev");
    assert.equal(argv[argv.indexOf("--ip") + 1], "127.0.0.1");
    assert.equal(argv[argv.indexOf("--port") + 1], "8799");
  });
});
