import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { WizardSession } from "../../src/wizard/wizard-session";

describe("WizardSession expiry alarm (threat model case 22)", () => {
  it("still wipes an abandoned wizard, exactly once, after its alarm throws twice", async () => {
    const stub = env.WIZARD_SESSION.get(env.WIZARD_SESSION.newUniqueId());
    await stub.create("ten_a", "key_a");
    let wipes = 0;
    let faults = 2;
    await runInDurableObject(stub, (_instance: WizardSession, state) => {
      // Abandoned: idle past its expiry, while the alarm is still armed (it fires only when the test says).
      const current = state.storage.kv.get<Record<string, unknown>>("state") as Record<string, unknown>;
      state.storage.kv.put("state", { ...current, expires_at: new Date(Date.now() - 1000).toISOString() });
      const deleteAll = state.storage.deleteAll.bind(state.storage);
      state.storage.deleteAll = async (...args: Parameters<typeof deleteAll>) => {
        if (faults > 0) {
          faults -= 1;
          throw new Error("injected storage fault");
        }
        wipes += 1;
        return deleteAll(...args);
      };
    });
    await expect(runDurableObjectAlarm(stub)).rejects.toThrow("injected storage fault");
    await expect(runDurableObjectAlarm(stub)).rejects.toThrow("injected storage fault");
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await runDurableObjectAlarm(stub)).toBe(false);
    expect(wipes).toBe(1);
    expect(await stub.read("ten_a")).toMatchObject({ ok: false, code: "NOT_FOUND" });
  });
});
