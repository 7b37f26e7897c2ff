// The million-key instance (issue 13, "Scale"): one deployment of the build with 1,000,000 keys and 100,000 sealed
// credentials stored in one tenant, seeded straight into D1 (keys: bench/instance.mjs seedKeys; credentials:
// bench/credentials-seed.mjs, sealed in Node under the tenant's DEK and checked both ways). Stage 2 of run.mjs
// compares it with a 1,000-key instance. Another stage that needs a million stored keys can take the running
// instance instead of seeding its own (about a minute and a half here): `restart({ entry, vars, ... })` swaps
// workerd's options and keeps D1 (see bench/README.md, "Scale").
import { seedSealedCredentials } from "./credentials-seed.mjs";
import { startInstance } from "./instance.mjs";
import { log } from "./system.mjs";

export const MILLION_SETTINGS = {
  keys: Number(process.env.BENCH_SCALE_KEYS ?? 1_000_000),
  credentials: Number(process.env.BENCH_SCALE_CREDENTIALS ?? 100_000),
};

/**
 * startInstance with `storedKeys` (default 1,000,000) api_keys rows, then `credentials` (default 100,000)
 * credentials in its tenant, the API's one included. Takes startInstance's arguments; the instance is
 * startInstance's (url, host, adminKey, warm, credential, seeded keys, specs, restart, stop) plus
 * `credentialCount`, `keySeedSeconds`, `credentialSeedSeconds` and `seedSeconds` (both).
 */
export async function startMillionInstance({
  storedKeys = MILLION_SETTINGS.keys,
  credentials = MILLION_SETTINGS.credentials,
  ...args
}) {
  const started = performance.now();
  const instance = await startInstance({ ...args, storedKeys });
  const sealed = await seedSealedCredentials(instance, args.secrets.MASTER_KEY, credentials);
  instance.credentialCount = sealed.credentials;
  instance.keySeedSeconds = instance.seedSeconds;
  instance.credentialSeedSeconds = sealed.seconds;
  instance.seedSeconds = (performance.now() - started) / 1000;
  log(
    `${instance.name}: ${instance.storedCount} keys and ${instance.credentialCount} credentials ready in ${instance.seedSeconds.toFixed(0)} s`,
  );
  return instance;
}
