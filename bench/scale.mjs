// Stage 2 of run.mjs (alone: BENCH_ONLY=scale): the same build with 1,000 keys stored and with 1,000,000 keys and
// 100,000 credentials stored (bench/million.mjs), measured alternately round by round so drift on this shared
// machine hits both alike: /healthz and warm verifies, cold passes (the same 997 keys each time, per instance;
// twice as many rounds, a pass lasts about a second and varies a lot), the vault's reveal and store (stage 1's
// scenarios), and on the big instance a steady-state cold run over keys never used before. See bench/README.md.
import { summarize } from "./report.mjs";

/**
 * `measure`, `measureVault`, `coldPass` and `passKeys` are run.mjs's (each run starts with workerd idle); both instances must
 * have been restarted just before, so they start from equal, empty isolates.
 */
export async function runScaleStage({ small, large, measure, measureVault, coldPass, passKeys, settings }) {
  const sides = [
    ["1k", small],
    ["1m", large],
  ];
  const runs = {};
  const push = (name, run) => {
    runs[name] ??= [];
    runs[name].push(run);
  };
  for (let round = 1; round <= settings.coldRounds; round++) {
    if (round <= settings.rounds) {
      // Each instance's own /healthz next to its warm runs: the ratios in this stage compare like with like.
      for (const [size, instance] of sides) {
        push(
          `healthz${size}`,
          await measure(instance, `/healthz (round ${round})`, instance.specs.healthz()),
        );
        push(`warm${size}`, await measure(instance, `verify warm (round ${round})`, instance.specs.warm()));
      }
    }
    for (const [size, instance] of sides)
      push(`cold${size}`, await coldPass(instance, `verify cold (round ${round})`, passKeys(instance)));
  }
  // The vault (stage 1's scenarios, run.mjs's measureVault), with the tenant holding one credential or 100,000.
  for (let round = 1; round <= settings.rounds; round++) {
    for (const [size, instance] of sides) {
      const vault = await measureVault(instance, round);
      push(`vaultHealthz${size}`, vault.healthz);
      push(`reveal${size}`, vault.reveal);
      push(`store${size}`, vault.store);
    }
  }
  const figures = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, summarize(v)]));
  // Steady state on the big instance: one continuous run over keys never used before, usage writes included.
  const steady = large.seeded.slice(settings.storedSmall);
  figures.coldSteady1m = summarize([
    await measure(
      large,
      "verify cold, steady state",
      { ...large.specs.cold(steady.slice(15_000)), duration: settings.seconds * settings.rounds },
      { warmup: large.specs.cold(steady.slice(0, 15_000)) },
    ),
  ]);
  return {
    figures,
    smallCount: small.storedCount,
    largeCount: large.storedCount,
    largeCredentials: large.credentialCount,
    seedSeconds: { keys: large.keySeedSeconds, credentials: large.credentialSeedSeconds },
    passSize: passKeys(small).length,
  };
}
