import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  channelSlot,
  channelSlots,
  channelSlotsOf,
  fieldsUnder,
  serviceSlot,
  serviceSlots,
} from "../../src/wizard/slots";
import { CHANNEL_SECRET_FIELDS } from "../../src/wizard/steps";

const fields = [...new Set(Object.values(CHANNEL_SECRET_FIELDS).flat())];
// Names built from the characters a separator could hide behind: ".", "/", ":", "%" and escapes.
const name = fc.string({
  unit: fc.constantFrom("o", "p", "s", ".", "/", ":", "%", "2", "F", "_"),
  maxLength: 12,
});

describe("wizard slot names", () => {
  it('keep "ops" and "ops.slack" apart: neither channel\'s prefix takes the other\'s secrets', () => {
    const sealed = {
      ...channelSlotsOf("ops", { webhook_url: "A" }),
      ...channelSlotsOf("ops.slack", { webhook_url: "B" }),
      ...channelSlotsOf("ops.slack.webhook_url", { webhook_url: "C" }),
    };
    expect(fieldsUnder(sealed, channelSlots("ops"))).toEqual({ webhook_url: "A" });
    expect(fieldsUnder(sealed, channelSlots("ops.slack"))).toEqual({ webhook_url: "B" });
    expect(fieldsUnder(sealed, channelSlots("ops.slack.webhook_url"))).toEqual({ webhook_url: "C" });
  });

  it("give distinct (channel, field) pairs distinct slots, and one channel's prefix covers only its own", () => {
    fc.assert(
      fc.property(name, name, fc.constantFrom(...fields), fc.constantFrom(...fields), (a, b, fa, fb) => {
        fc.pre(a !== b || fa !== fb);
        expect(channelSlot(a, fa)).not.toBe(channelSlot(b, fb));
        if (a !== b) expect(channelSlot(b, fb).startsWith(channelSlots(a))).toBe(false);
        expect(fieldsUnder({ [channelSlot(a, fa)]: "x" }, channelSlots(a))).toEqual({ [fa]: "x" });
      }),
      { numRuns: 2000, seed: 20_260_516 },
    );
  });

  it("never let a service's slots and a channel's slots overlap", () => {
    fc.assert(
      fc.property(name, name, fc.constantFrom(...fields), (service, channel, field) => {
        expect(serviceSlot(service, field).startsWith(channelSlots(channel))).toBe(false);
        expect(channelSlot(channel, field).startsWith(serviceSlots(service))).toBe(false);
      }),
      { numRuns: 500, seed: 20_260_516 },
    );
  });
});
