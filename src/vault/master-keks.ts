import { deriveKek, IntegrityError, type UnwrapAs, unwrapUnder, wrapUnder } from "../crypto/envelope";
import { masterAad, type WrapBinding } from "./wrap-binding";

/** The master KEK versions whose secrets are present and verified, by version. */
export class MasterKeks {
  private constructor(
    /** HKDF roots (MASTER_KEY, MASTER_KEY_<N>), by version. */
    readonly roots: ReadonlyMap<number, CryptoKey>,
    private readonly keks: ReadonlyMap<number, CryptoKey>,
  ) {}

  static async open(roots: ReadonlyMap<number, CryptoKey>): Promise<MasterKeks> {
    const keks = new Map<number, CryptoKey>();
    for (const [version, root] of roots) keks.set(version, await deriveKek(root, version));
    return new MasterKeks(roots, keks);
  }

  has(version: number): boolean {
    return this.keks.has(version);
  }

  private kek(version: number): CryptoKey {
    const kek = this.keks.get(version);
    // Unseal refuses to open while a recorded version a stored key depends on is absent, so a row naming a
    // version this deployment does not hold is a corrupted row: it fails closed, with no fallback.
    if (!kek)
      throw new IntegrityError(`wrapped under KEK version ${version}, which this deployment does not hold`);
    return kek;
  }

  wrap(version: number, key: CryptoKey, binding: WrapBinding): Promise<string> {
    return wrapUnder(this.kek(version), key, masterAad(binding, version));
  }

  unwrap(version: number, wrapped: string, binding: WrapBinding, as: UnwrapAs): Promise<CryptoKey> {
    return unwrapUnder(this.kek(version), wrapped, masterAad(binding, version), as);
  }
}
