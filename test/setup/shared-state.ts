/**
 * Files of the "shared" project (vitest.config.ts) run one after another in one workerd, with one
 * database and one instance of every module. So that no file sees what an earlier one left behind,
 * module state is put back around each file: the credential-sample generator restarts from its seed
 * (every file draws the same samples whatever ran before it), the outcomes the property files record
 * start empty, and the handlers a file added to the network mock and the property files' write watch
 * (write-watch.ts) go away with it.
 */
import { afterAll, beforeAll } from "vitest";
import { resetSamples } from "../catalog/samples";
import { network } from "./network";
import { OUTCOMES } from "./outcomes";
import { uninstallWriteWatch } from "./write-watch";

beforeAll(() => {
  resetSamples();
  OUTCOMES.clear();
});

afterAll(async () => {
  network.resetHandlers();
  await uninstallWriteWatch();
});
