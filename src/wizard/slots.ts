/**
 * The names of the sealed slots a wizard holds, in one place: the Worker seals and opens values under
 * them, the Durable Object deletes by them. No route or storage method builds a slot string by hand.
 *
 * Every part is percent-encoded and `encodeURIComponent` escapes "/", so "/" separates the parts
 * unambiguously: a slot belongs to exactly one (owner, field) pair whatever characters a channel name
 * holds. (A "." separator let the channel "ops" pick up the secrets of the channel "ops.slack".) The slot
 * name is also the field in each blob's AAD, so a blob moved to another slot fails to decrypt.
 */
const part = encodeURIComponent;

type Owner = "service" | "channel";

const ownerPrefix = (owner: Owner, id: string) => `${owner}/${part(id)}/`;

/** The slots of every service's entered or generated values. */
export const SERVICE_SLOTS = "service/";
/** The slots of every channel's secret settings. */
export const CHANNEL_SLOTS = "channel/";

/** Where one value entered or generated for a catalogue service is sealed. */
export const serviceSlot = (serviceId: string, field: string) =>
  `${ownerPrefix("service", serviceId)}${part(field)}`;
/** The prefix of all of one service's slots. */
export const serviceSlots = (serviceId: string) => ownerPrefix("service", serviceId);

/** Where one secret setting of an alert channel (keyed by the channel's name) is sealed. */
export const channelSlot = (channelName: string, field: string) =>
  `${ownerPrefix("channel", channelName)}${part(field)}`;
/** The prefix of all of one channel's slots. */
export const channelSlots = (channelName: string) => ownerPrefix("channel", channelName);

/** The slot names for one service's values, keyed by field. */
export function serviceSlotsOf(serviceId: string, values: Readonly<Record<string, string>>) {
  return Object.fromEntries(
    Object.entries(values).map(([field, value]) => [serviceSlot(serviceId, field), value]),
  );
}

/** The slot names for one channel's secret settings, keyed by field. */
export function channelSlotsOf(channelName: string, values: Readonly<Record<string, string>>) {
  return Object.fromEntries(
    Object.entries(values).map(([field, value]) => [channelSlot(channelName, field), value]),
  );
}

/** The entries of `slots` under one owner's prefix, still keyed by slot (for opening: the slot is in the AAD). */
export function slotsUnder<T>(slots: Readonly<Record<string, T>>, prefix: string): Record<string, T> {
  return Object.fromEntries(Object.entries(slots).filter(([slot]) => slot.startsWith(prefix)));
}

/** The entries of `slots` under one owner's prefix, keyed by field name again. */
export function fieldsUnder<T>(slots: Readonly<Record<string, T>>, prefix: string): Record<string, T> {
  const out: Record<string, T> = {};
  for (const [slot, value] of Object.entries(slots)) {
    if (slot.startsWith(prefix)) out[decodeURIComponent(slot.slice(prefix.length))] = value;
  }
  return out;
}
