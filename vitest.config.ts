import { randomInt } from "node:crypto";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig, type TestProjectInlineConfiguration } from "vitest/config";
import { unstable_readConfig } from "wrangler";

/**
 * fast-check runs from a fixed seed in `npm test`, so a run that passed once passes every time
 * (test/setup/fast-check.ts applies it). `npm run test:deep` (FC_DEEP=1) draws a random seed and
 * multiplies every property's numRuns; either way a failure's message carries the seed and the
 * counterexample path, and `FC_SEED=<seed> FC_PATH=<path> npx vitest run <file> -t "<test>"` replays it.
 */
const FIXED_SEED = 20261126;
const deep = process.env.FC_DEEP === "1";
const fcSeed = process.env.FC_SEED ? Number(process.env.FC_SEED) : deep ? randomInt(2 ** 31) : FIXED_SEED;
const fcRunsFactor = Number(process.env.FC_RUNS ?? (deep ? 10 : 1));
if (!Number.isSafeInteger(fcSeed) || !Number.isSafeInteger(fcRunsFactor) || fcRunsFactor < 1) {
  throw new Error("FC_SEED must be an integer and FC_RUNS a positive integer");
}
// The config is evaluated once per project: say it once.
const banner = globalThis as { fcBannerShown?: boolean };
if ((deep || process.env.FC_SEED || fcRunsFactor !== 1) && !banner.fcBannerShown) {
  banner.fcBannerShown = true;
  process.stdout.write(
    `fast-check: seed ${fcSeed}, numRuns x${fcRunsFactor} ` +
      `(replay: FC_SEED=${fcSeed} FC_RUNS=${fcRunsFactor} FC_PATH=<path from the failure> npx vitest run <file> -t "<test>")\n`,
  );
}

const WRANGLER_CONFIG = "./wrangler.toml";

export interface RateLimitBinding {
  name: string;
  namespace_id: string;
  simple: { limit: number; period: 10 | 60 };
}
/**
 * The per-tenant budget of the `budgets` project only: test/security/rate-limits.test.ts proves a
 * burst of 10x the limit is refused with this small limit (60 requests instead of 6,000), and
 * asserts the production value in wrangler.toml separately. Every other project runs with the
 * production limits.
 */
export const TEST_TENANT_LIMIT = 6;

/**
 * Files that change what every other file relies on get a fresh workerd and database each; every other
 * file shares one per worker ("shared" project). A file belongs here if it alters the schema, touches
 * every tenant's rows, or spends a per-client budget (wrangler.toml AUTH_*_LIMITER) to exhaustion: the
 * limiters' windows are wall-clock minutes, so a budget one file exhausted would still be spent when the
 * next file's requests arrive.
 */
const ISOLATED = [
  // Drops and re-creates the audit_log triggers and adds a `fail_audit` trigger.
  "test/security/audit-chain.test.ts",
  // Runs the cron 31 days ahead: it would purge and expire every other file's rows in a shared database.
  "test/jobs/scheduled.test.ts",
  // Deletes every tenant's data keys (and writes them back in one statement).
  "test/crypto/sealed.test.ts",
  // Exhausts per-client sign-in, TOTP and bootstrap budgets.
  "test/security/auth-hardening.test.ts",
  // Run the rotation cron, which claims every tenant's due keys.
  "test/lifecycle/key-rotation.test.ts",
  "test/lifecycle/key-rotation-faults.test.ts",
  "test/lifecycle/key-rotation-delivery.test.ts",
  "test/lifecycle/scheduler.test.ts",
  // Runs the rotation cron 90 days ahead, which claims every tenant's due data keys.
  "test/vault/dek-rotation-schedule.test.ts",
  // Runs migration 0008's schedule conversion, which rewrites every tenant's active DEK.
  "test/vault/migration-0008.test.ts",
  // Enqueues scheduled re-tests of every tenant's due credentials (claims their next_test_at).
  "test/lifecycle/retests.test.ts",
  // Counts every tenant's data keys and sealed rows (the keyring status is deployment-wide).
  "test/vault/keyring-status.test.ts",
  // Runs retention over every tenant's usage and audit rows, and drops the audit_log update trigger.
  "test/monitoring/retention.test.ts",
  // Relays (and deletes) every tenant's alert outbox rows.
  "test/monitoring/delivery-relay.test.ts",
  // Folds every tenant's usage hours into baselines and evaluates every tenant's counter rules.
  "test/monitoring/counter-rules.test.ts",
  // Runs the alert tick, which evaluates every tenant's rules and relays every pending notification.
  "test/monitoring/alert-tick.test.ts",
  // Folds every tenant's usage hours and runs the alert tick with small page budgets (a pass over several ticks).
  "test/monitoring/alert-paging.test.ts",
  // Writes key change feed rows of no key, counts the whole feed, purges it and runs the cron.
  "test/keys/key-cache-feed.test.ts",
];
const BUDGETS = ["test/security/rate-limits.test.ts"];
/**
 * KEK rotation after the switch (test/vault/kek-fixtures.ts): a Workflow's and a Durable Object's env is the
 * project's bindings, so these files run in projects configured as the deployment AFTER the switch, and write
 * their "before" data through worker.fetch with the old configuration. Each file gets a fresh workerd (they
 * run the cron and re-wrap every tenant's keys).
 */
const KEK_SWITCH_VAULT = {
  VAULT_ADDR: "https://vault.test:8443",
  VAULT_TOKEN: "hvs.CAESIKeywardenKekTestsToken0001",
};
// master:1 -> master:2 (Vault still configured for the move back out of Vault).
const KEK_MASTER_2 = ["test/vault/kek-rewrap*.test.ts", "test/vault/vault-kek-out.test.ts"];
// master -> Vault Transit, and Vault key versions.
const KEK_VAULT = [
  "test/vault/vault-kek.test.ts",
  // A Vault-only deployment's Cache API entry key (the stored key-cache system key).
  "test/keys/key-cache-vault.test.ts",
];

export default defineConfig(async () => {
  const migrations = await readD1Migrations("./migrations");
  const limiters: RateLimitBinding[] = unstable_readConfig({ config: WRANGLER_CONFIG }).ratelimits ?? [];
  const tenantLimiter = limiters.find((binding) => binding.name === "TENANT_RATE_LIMITER");
  if (!tenantLimiter) throw new Error("wrangler.toml has no TENANT_RATE_LIMITER");

  const worker = (tenantLimit?: number, bindings: Record<string, string> = {}) =>
    cloudflareTest({
      wrangler: { configPath: WRANGLER_CONFIG },
      miniflare: {
        bindings: {
          TEST_MIGRATIONS: migrations,
          // Fixed test secrets: 32 random bytes, base64.
          MASTER_KEY: "Pi6D1bN9Swlets3J7d8X8XYF8JxaPauTdGs0vuTR+QM=",
          BOOTSTRAP_TOKEN: "test-bootstrap-token-0123456789abcdef",
          ...bindings,
        },
        ...(tenantLimit === undefined
          ? {}
          : {
              ratelimits: {
                TENANT_RATE_LIMITER: {
                  ...tenantLimiter,
                  simple: { ...tenantLimiter.simple, limit: tenantLimit },
                },
              },
            }),
      },
    });

  const project = (
    name: string,
    include: string[],
    options: {
      exclude?: string[];
      isolate: boolean;
      tenantLimit?: number;
      bindings?: Record<string, string>;
    },
  ): TestProjectInlineConfiguration => ({
    extends: true,
    plugins: [worker(options.tenantLimit, options.bindings)],
    test: {
      name,
      include,
      exclude: ["test/e2e/**", ...(options.exclude ?? [])],
      isolate: options.isolate,
    },
  });

  const bench = process.env.BENCH_ISOLATE === "1";
  return {
    test: {
      // `npm run bench:isolate` runs the in-isolate benchmark instead of the tests (bench/README.md).
      projects: bench
        ? [project("bench", ["bench/isolate/*.test.ts"], { isolate: true })]
        : [
            // One workerd (and one D1 database) per worker for every file that leaves shared state as it
            // found it: starting a workerd and evaluating the app per file was a third of the suite's time.
            project("shared", ["test/**/*.test.ts", "packages/*/test/**/*.test.ts"], {
              exclude: [...ISOLATED, ...BUDGETS, ...KEK_MASTER_2, ...KEK_VAULT],
              isolate: false,
            }),
            project("isolated", ISOLATED, { isolate: true }),
            project("budgets", BUDGETS, { isolate: true, tenantLimit: TEST_TENANT_LIMIT }),
            project("kek-master-2", KEK_MASTER_2, {
              isolate: true,
              bindings: {
                // 32 random bytes, base64: the new master version.
                MASTER_KEY_2: "brX9LIDCjKphOIdUs+Vw0LggLIA4zP05nnlobPRnQck=",
                KEK_VERSION: "2",
                ...KEK_SWITCH_VAULT,
              },
            }),
            project("kek-vault", KEK_VAULT, {
              isolate: true,
              bindings: { KEK_PROVIDER: "vault", ...KEK_SWITCH_VAULT },
            }),
          ],
      setupFiles: [
        "./test/setup/apply-migrations.ts",
        "./test/setup/fast-check.ts",
        "./test/setup/shared-state.ts",
      ],
      provide: {
        fcSeed,
        fcPath: process.env.FC_PATH ?? "",
        fcRunsFactor,
        // wrangler.toml's limiters as deployed, for the tests that hold the configuration to its values.
        wranglerRatelimits: limiters,
        testTenantLimit: TEST_TENANT_LIMIT,
      },
      // Both cores: under load from another process this still gives the suite the larger share.
      maxWorkers: 2,
      testTimeout: 30_000 * fcRunsFactor,
      reporters: ["default", "./test/summary-reporter.ts"],
    },
  };
});
