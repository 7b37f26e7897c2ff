/** IPv4 and IPv6 addresses as 128-bit integers (IPv4 mapped into ::ffff:0:0/96, RFC 4291 §2.5.5.2). */

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

function parseIPv4(text: string): bigint | null {
  if (!IPV4.test(text)) return null;
  return text.split(".").reduce((acc, part) => (acc << 8n) | BigInt(part), 0n);
}

function parseIPv6(text: string): bigint | null {
  if (!/^[0-9a-fA-F:.]+$/.test(text) || text.length > 45) return null;
  let tail: bigint | null = null;
  let head = text;
  const lastColon = text.lastIndexOf(":");
  if (text.includes(".")) {
    tail = parseIPv4(text.slice(lastColon + 1));
    if (tail === null) return null;
    head = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const halves = head.split("::");
  if (halves.length > 2) return null;
  const groupsOf = (part: string | undefined) => (part ? part.split(":") : []);
  const left = groupsOf(halves[0]);
  const right = groupsOf(halves[1]);
  const missing = 8 - left.length - right.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const groups = [...left, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...right];
  let value = 0n;
  for (const group of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return null;
    value = (value << 16n) | BigInt(`0x${group}`);
  }
  if (tail !== null) value = (value & ~0xffffffffn) | tail;
  return value;
}

const V4_MAPPED = 0xffffn << 32n;

export function parseIp(text: string): bigint | null {
  const v4 = parseIPv4(text);
  if (v4 !== null) return V4_MAPPED | v4;
  return parseIPv6(text);
}

/** True for an IPv4 address as `parseIp` returns it (in ::ffff:0:0/96, however it was written). */
export function isV4Mapped(ip: bigint): boolean {
  return ip >> 32n === 0xffffn;
}

export interface Cidr {
  network: bigint;
  prefix: number;
}

/** Parses `1.2.3.0/24`, `2001:db8::/32` or a bare address (a /32 or /128). Host bits must be zero. */
export function parseCidr(text: string): Cidr | null {
  const [address, prefixText, extra] = text.split("/");
  if (address === undefined || extra !== undefined) return null;
  const isV4 = parseIPv4(address) !== null;
  const ip = parseIp(address);
  if (ip === null) return null;
  const maxPrefix = isV4 ? 32 : 128;
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) return null;
  const prefix = prefixText === undefined ? maxPrefix : Number(prefixText);
  if (prefix > maxPrefix) return null;
  const bits = BigInt(prefix + (isV4 ? 96 : 0));
  const mask = bits === 0n ? 0n : ((1n << bits) - 1n) << (128n - bits);
  if ((ip & ~mask & ((1n << 128n) - 1n)) !== 0n) return null;
  return { network: ip, prefix: Number(bits) };
}

export function cidrContains(cidr: Cidr, ip: bigint): boolean {
  const bits = BigInt(cidr.prefix);
  const shift = 128n - bits;
  return bits === 0n || ip >> shift === cidr.network >> shift;
}

export function ipAllowed(allowlist: readonly string[], ipText: string | undefined): boolean {
  if (!ipText) return false;
  const ip = parseIp(ipText);
  if (ip === null) return false;
  return allowlist.some((entry) => {
    const cidr = parseCidr(entry);
    return cidr !== null && cidrContains(cidr, ip);
  });
}
