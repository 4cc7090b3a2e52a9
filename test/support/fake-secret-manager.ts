import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { SecretManagerServiceClient } from "@google-cloud/secret-manager";
import { grpc as gaxGrpc } from "google-gax";

/**
 * A local stand-in for Google Secret Manager: a real gRPC server built from the `.proto` files shipped in
 * `@google-cloud/secret-manager`, serving AccessSecretVersion over an in-memory map, so the real
 * `SecretManagerServiceClient` can be pointed at it (see {@link createFakeSecretManagerClient}).
 *
 * Behaviour copied from the real service: `versions/latest` is the newest version whatever its state; a
 * disabled version answers FAILED_PRECONDITION; an unknown secret or version answers NOT_FOUND; another
 * project answers PERMISSION_DENIED.
 */
export interface FakeSecretManager {
  readonly port: number;
  readonly projectId: string;
  /** Adds a version (creating the secret); returns its number (1, 2, ...). */
  addVersion(secret: string, data: string | Uint8Array): number;
  disableVersion(secret: string, version: number): void;
  deleteSecret(secret: string): void;
  /** Makes every access of `secret` fail with `code` until called with undefined. */
  failWith(secret: string, code: grpc.status | undefined, details?: string): void;
  /**
   * Holds every AccessSecretVersion answer (requests are still recorded) until the returned function is
   * called; then the held calls are answered from the state at that moment. Lets a test observe a client
   * that is waiting for its first load, with no timing involved.
   */
  hold(): () => void;
  /** Resolves once `count` AccessSecretVersion requests have been received in total. */
  whenRequested(count: number): Promise<void>;
  /** Resource names of every AccessSecretVersion request received, in order. */
  readonly requests: string[];
  /** Stops listening and drops connections, so clients see the service as unreachable. */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

interface Version {
  readonly data: Buffer;
  enabled: boolean;
}

interface AccessRequest {
  name: string;
}

const require = createRequire(import.meta.url);
const protoDirs = [
  join(dirname(require.resolve("@google-cloud/secret-manager")), "..", "protos"),
  join(dirname(require.resolve("google-gax")), "..", "protos"),
];
const packageDefinition = protoLoader.loadSync("google/cloud/secretmanager/v1/service.proto", {
  includeDirs: protoDirs,
  keepCase: false,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
});
const service = (
  grpc.loadPackageDefinition(packageDefinition) as unknown as {
    google: { cloud: { secretmanager: { v1: { SecretManagerService: grpc.ServiceClientConstructor } } } };
  }
).google.cloud.secretmanager.v1.SecretManagerService.service;

export async function startFakeSecretManager(projectId = "test-project"): Promise<FakeSecretManager> {
  const secrets = new Map<string, Version[]>();
  const failures = new Map<string, { code: grpc.status; details: string }>();
  const requests: string[] = [];
  const requestWaiters = new Set<() => void>();
  let held: (() => void)[] | undefined;

  const accessSecretVersion: grpc.handleUnaryCall<AccessRequest, unknown> = (call, callback) => {
    requests.push(call.request.name);
    for (const wake of requestWaiters) wake();
    if (held !== undefined) held.push(() => answer(call, callback));
    else answer(call, callback);
  };

  const answer: grpc.handleUnaryCall<AccessRequest, unknown> = (call, callback) => {
    const name = call.request.name;
    const match = /^projects\/([^/]+)\/secrets\/([^/]+)\/versions\/([^/]+)$/.exec(name);
    if (match === null) {
      callback({
        code: grpc.status.INVALID_ARGUMENT,
        details: `Invalid resource field value in the request.`,
      });
      return;
    }
    const [, project = "", secret = "", versionId = ""] = match;
    if (project !== projectId) {
      callback({
        code: grpc.status.PERMISSION_DENIED,
        details: `Permission 'secretmanager.versions.access' denied for resource '${name}' (or it may not exist).`,
      });
      return;
    }
    const failure = failures.get(secret);
    if (failure !== undefined) {
      callback({ code: failure.code, details: failure.details });
      return;
    }
    const versions = secrets.get(secret);
    const number = versionId === "latest" ? (versions?.length ?? 0) : Number(versionId);
    const version = versions?.[number - 1];
    if (version === undefined) {
      callback({
        code: grpc.status.NOT_FOUND,
        details: `Secret [projects/${project}/secrets/${secret}] not found or has no versions.`,
      });
      return;
    }
    const resolved = `projects/${project}/secrets/${secret}/versions/${number}`;
    if (!version.enabled) {
      callback({
        code: grpc.status.FAILED_PRECONDITION,
        details: `Secret Version [${resolved}] is in DISABLED state.`,
      });
      return;
    }
    callback(null, { name: resolved, payload: { data: version.data } });
  };

  let server: grpc.Server | undefined;
  const listen = (port: number): Promise<number> => {
    const next = new grpc.Server();
    next.addService(service, {
      AccessSecretVersion: accessSecretVersion,
    });
    return new Promise((resolve, reject) => {
      next.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
        if (err) {
          reject(err);
          return;
        }
        server = next;
        resolve(bound);
      });
    });
  };
  const stop = (): Promise<void> => {
    const current = server;
    server = undefined;
    current?.forceShutdown();
    return Promise.resolve();
  };

  const port = await listen(0);
  return {
    port,
    projectId,
    requests,
    addVersion(secret, data) {
      const versions = secrets.get(secret) ?? [];
      versions.push({ data: Buffer.from(data), enabled: true });
      secrets.set(secret, versions);
      return versions.length;
    },
    disableVersion(secret, version) {
      const found = secrets.get(secret)?.[version - 1];
      if (found === undefined) throw new Error(`no version ${version} of ${secret}`);
      found.enabled = false;
    },
    deleteSecret(secret) {
      secrets.delete(secret);
    },
    hold() {
      const queue: (() => void)[] = [];
      held = queue;
      return () => {
        if (held === queue) held = undefined;
        for (const release of queue.splice(0)) release();
      };
    },
    whenRequested(count) {
      return new Promise<void>((resolve) => {
        const check = (): void => {
          if (requests.length < count) return;
          requestWaiters.delete(check);
          resolve();
        };
        requestWaiters.add(check);
        check();
      });
    },
    failWith(secret, code, details = "injected failure") {
      if (code === undefined) failures.delete(secret);
      else failures.set(secret, { code, details });
    },
    stop,
    async restart() {
      await stop();
      await listen(port);
    },
    close: stop,
  };
}

/**
 * The real client library pointed at a fake: plaintext to 127.0.0.1, no Google credentials lookup (passing
 * `sslCreds` skips it). Set `METADATA_SERVER_DETECTION=none` before use so nothing probes the GCE metadata
 * server.
 */
export function createFakeSecretManagerClient(port: number): SecretManagerServiceClient {
  return new SecretManagerServiceClient({
    apiEndpoint: "127.0.0.1",
    port,
    sslCreds: gaxGrpc.credentials.createInsecure(),
    // Reconnect quickly after the fake restarts (grpc-js backs off up to two minutes by default).
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 500,
  });
}
