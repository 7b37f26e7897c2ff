const encoder = new TextEncoder();

export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(text) as Uint8Array<ArrayBuffer>;
}

export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** Strict: throws on anything that is not canonical base64. */
export function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  if (toBase64(bytes) !== text) throw new TypeError("non-canonical base64");
  return bytes;
}

/** Uint8Array.prototype.toHex (ES2026, in workerd's V8; not yet in the project's ES2024 lib typings). */
type HexEncodable = Uint8Array & { toHex(): string };

export function toHex(bytes: ArrayBuffer | Uint8Array): string {
  // Native: a third of the cost of a JS loop, and verify hashes a key or two on every request.
  return ((bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)) as HexEncodable).toHex();
}
