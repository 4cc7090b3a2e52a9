/** One read of a secret: its text and an opaque version id (changes whenever the content may have). */
export interface SecretVersion {
  readonly data: string;
  readonly version: string;
}

/** Where secrets are read from. */
export interface SecretSource {
  /** For messages: `secret-manager` or `files`. */
  readonly kind: "secret-manager" | "files";
  /** Where a secret lives, for messages (`projects/p/secrets/x`, `config/x.json`); never its value. */
  describe(name: string): string;
  /**
   * Where one version of a secret lives, for messages about its content (`projects/p/secrets/x/versions/7`);
   * default `describe(name)` (a file is its own version).
   */
  describeVersion?(name: string, version: string): string;
  /**
   * Reads the current version of a secret. Resolves undefined when the secret does not exist; rejects on
   * any other failure with an error whose message names the secret and the cause, never the value.
   */
  read(name: string): Promise<SecretVersion | undefined>;
  /**
   * Optional: tells `onChange` soon after a secret may have changed, so a change is picked up at once
   * rather than at the next periodic re-read (which stays the fallback). Told too often is harmless (a
   * re-read of unchanged content changes nothing); the returned handle stops it.
   */
  watch?(handlers: SecretWatchHandlers): SecretWatch;
}

export interface SecretWatchHandlers {
  /** Something may have changed: re-read. */
  readonly onChange: () => void;
  /** Watching is not possible for now (why, safe to log); changes are then seen only by the periodic re-read. */
  readonly onError: (message: string) => void;
}

export interface SecretWatch {
  /** Stops watching; no `onChange` follows. */
  close(): void;
}

/** A failed read, with a message safe to log. */
export class SecretSourceError extends Error {
  override readonly name = "SecretSourceError";
  /** A stable reason: the gRPC code name for Secret Manager (`PERMISSION_DENIED`), the errno code for files. */
  readonly reason: string;

  constructor(message: string, reason: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

const fatalUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Decodes a payload as UTF-8, refusing invalid bytes instead of turning them into U+FFFD. */
export function decodeUtf8(bytes: Uint8Array, where: string): string {
  try {
    return fatalUtf8.decode(bytes);
  } catch {
    throw new SecretSourceError(`${where}: not valid UTF-8`, "INVALID_UTF8");
  }
}
