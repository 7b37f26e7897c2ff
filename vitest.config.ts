import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

export default defineConfig(async () => {
  const migrations = await readD1Migrations("./migrations");
  return {
    plugins: [
      cloudflareTest({
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: {
          bindings: {
            TEST_MIGRATIONS: migrations,
            // Fixed test secrets: 32 random bytes, base64.
            MASTER_KEY: "Pi6D1bN9Swlets3J7d8X8XYF8JxaPauTdGs0vuTR+QM=",
            BOOTSTRAP_TOKEN: "test-bootstrap-token-0123456789abcdef",
            USAGE_FLUSH_MS: "0",
          },
        },
      }),
    ],
    test: {
      // `npm run bench:isolate` runs the in-isolate benchmark instead of the tests (bench/README.md).
      include: process.env.BENCH_ISOLATE === "1" ? ["bench/isolate/*.test.ts"] : ["test/**/*.test.ts"],
      exclude: ["test/e2e/**"],
      setupFiles: ["./test/setup/apply-migrations.ts"],
      testTimeout: 30_000,
      reporters: ["default", "./test/summary-reporter.ts"],
    },
  };
});
