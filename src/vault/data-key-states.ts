/** A DEK is `active` (new writes) or `retiring` (still decrypts, while fields move off it); retired ones are deleted. */
export const DATA_KEY_STATES = ["active", "retiring"] as const;
export type DataKeyState = (typeof DATA_KEY_STATES)[number];
