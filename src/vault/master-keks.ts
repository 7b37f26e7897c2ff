import { deriveKek, IntegrityError, type UnwrapAs, unwrapUnder, wrapUnder } from "../crypto/envelope";
import { masterAad, type WrapBinding } from "./wrap-binding";

/**
 * The master KEK versions this isolate holds. A version whose secret is present but was not yet recorded
 * when the keyring opened (another isolate switched KEK_VERSION since) is checked against its key-check
 * value on first use: an isolate still on the old configuration keeps reading keys the re-wrap has moved.
 */
export class MasterKeks {
  private readonly keks = new Map<number, Promise<CryptoKey>>();
  /** The versions whose secrets matched their key-check values when the keyring opened, oldest first. */
  private readonly verified: readonly number[];

  constructor(
    /** HKDF roots (MASTER_KEY, MASTER_KEY_<N>) present in this isolate, by version. */
    private readonly roots: ReadonlyMap<number, CryptoKey>,
    verified: Iterable<number>,
    /** Whether the stored key-check value of `version` matches its present secret (one D1 read). */
    private readonly verifyLater: (version: number) => Promise<boolean>,
  ) {
    this.verified = [...verified].sort((a, b) => a - b);
    for (const version of this.verified) this.keks.set(version, this.derive(version));
  }

  /** The HKDF root of the oldest verified master version, if any. */
  oldestRoot(): CryptoKey | undefined {
    const oldest = this.verified[0];
    return oldest === undefined ? undefined : this.roots.get(oldest);
  }

  private derive(version: number): Promise<CryptoKey> {
    const root = this.roots.get(version);
    if (!root) return Promise.reject(new IntegrityError(`no master secret for KEK version ${version}`));
    return deriveKek(root, version);
  }

  private kek(version: number): Promise<CryptoKey> {
    let kek = this.keks.get(version);
    if (!kek) {
      // Unseal refuses to open while a recorded version a stored key depends on is absent, so a row naming
      // a version this isolate cannot verify is a corrupted row: it fails closed, with no fallback.
      kek = this.verifyLater(version).then((ok) => {
        if (!ok)
          throw new IntegrityError(
            `wrapped under KEK version ${version}, which this deployment does not hold`,
          );
        return this.derive(version);
      });
      const pending = kek;
      this.keks.set(version, pending);
      pending.catch(() => {
        if (this.keks.get(version) === pending) this.keks.delete(version);
      });
    }
    return kek;
  }

  async wrap(version: number, key: CryptoKey, binding: WrapBinding): Promise<string> {
    return wrapUnder(await this.kek(version), key, masterAad(binding, version));
  }

  async unwrap(version: number, wrapped: string, binding: WrapBinding, as: UnwrapAs): Promise<CryptoKey> {
    return unwrapUnder(await this.kek(version), wrapped, masterAad(binding, version), as);
  }
}
