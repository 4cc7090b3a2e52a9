import { Code } from "@connectrpc/connect";
import { codeTable } from "../errors/index.js";
import { decodeUtf8, SecretSourceError, type SecretSource, type SecretVersion } from "./source.js";

/**
 * The part of `SecretManagerServiceClient` (from `@google-cloud/secret-manager`) this source uses; pass the
 * real client. Typed structurally so this module does not load the client library itself.
 */
export interface SecretManagerClient {
  accessSecretVersion(
    request: { name: string },
    options: { timeout: number; retry: null },
  ): Promise<
    readonly [
      {
        name?: string | null;
        payload?: { data?: Uint8Array | string | null } | null;
      },
      ...unknown[],
    ]
  >;
}

export interface SecretManagerSourceOptions {
  /** `API_KEY_SERVER_GCP_PROJECT_ID`. */
  readonly projectId: string;
  readonly client: SecretManagerClient;
  /**
   * Upper bound on one read. Default 10 000 ms. The client library's own retries are switched off (it would
   * retry UNAVAILABLE silently for up to 10 minutes): the secret store retries at start-up, logging a
   * warning per attempt, and a failed refresh is simply tried again at the next interval.
   */
  readonly timeoutMs?: number;
}

/** The gRPC code name of a failed call (codeTable spells them as google/rpc/code.proto does). */
function codeName(code: unknown): string {
  return typeof code === "number" && Object.hasOwn(codeTable, code)
    ? codeTable[code as Code].name
    : "UNKNOWN";
}

/**
 * Reads the latest version of each secret from Google Secret Manager
 * (`projects/<projectId>/secrets/<name>/versions/latest`). NOT_FOUND (no such secret, or no version) resolves
 * undefined; every other failure — PERMISSION_DENIED, FAILED_PRECONDITION for a disabled latest version,
 * UNAVAILABLE — rejects with a SecretSourceError carrying the gRPC code name. The version is the number from
 * the resolved version name.
 */
export function createSecretManagerSource(options: SecretManagerSourceOptions): SecretSource {
  const { projectId, client, timeoutMs = 10_000 } = options;
  if (!/^[a-z0-9][a-z0-9.:-]*$/i.test(projectId)) {
    throw new TypeError("createSecretManagerSource: projectId must be a Google Cloud project id");
  }
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) {
    throw new TypeError("createSecretManagerSource: timeoutMs must be a positive integer");
  }
  const describe = (name: string): string => `projects/${projectId}/secrets/${name}`;
  return {
    kind: "secret-manager",
    describe,
    describeVersion: (name, version) => `${describe(name)}/versions/${version}`,
    async read(name: string): Promise<SecretVersion | undefined> {
      const where = describe(name);
      let response;
      try {
        [response] = await client.accessSecretVersion(
          { name: `${where}/versions/latest` },
          { timeout: timeoutMs, retry: null },
        );
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (code === Code.NotFound) return undefined;
        const reason = codeName(code);
        throw new SecretSourceError(`${where}: ${reason}: ${describeCause(err)}`, reason, { cause: err });
      }
      const data = response.payload?.data;
      if (data === undefined || data === null) {
        throw new SecretSourceError(`${where}: the latest version has no payload`, "DATA_LOSS");
      }
      const version = response.name?.split("/").at(-1) ?? "latest";
      const text = typeof data === "string" ? data : decodeUtf8(data, where);
      return { data: text, version };
    },
  };
}

/** The server's own explanation, on one line. Secret Manager errors never carry the payload. */
function describeCause(err: unknown): string {
  const details = (err as { details?: unknown }).details;
  const text =
    typeof details === "string" && details !== "" ? details : err instanceof Error ? err.message : "";
  return text.replace(/\s+/g, " ").trim() || "no details";
}
