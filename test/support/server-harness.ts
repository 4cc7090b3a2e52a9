import type { ServiceImpl } from "@connectrpc/connect";
import { ChatService } from "../../gen/apikeyserver/v1/chat_pb.js";
import {
  createConnectOptions,
  createDispatch,
  createOnePortServer,
  defaultMaxHeaderBytes,
  registerHealth,
  registerReflection,
  type ConnectOptionsInput,
  type OnePortServer,
  type OnePortServerOptions,
  type Readiness,
} from "../../src/server/index.js";
import { composeEdge, createAccessLogEdge, createHeaderLimitEdge } from "../../src/edge/index.js";
import { createWireErrorInterceptor } from "../../src/rpc/wire-error.js";
import { captureLog, type CapturedLog } from "./log-capture.js";
import { unimplementedChatService } from "./unimplemented-chat.js";

export interface TestServer {
  readonly port: number;
  readonly baseUrl: string;
  readonly server: OnePortServer;
  readonly log: CapturedLog;
  /** Mutable readiness the health services read; call `notify()` after changing it. */
  readonly readiness: { current: Readiness };
  notify(): void;
  close(graceMs?: number): Promise<void>;
}

export interface TestServerOptions {
  readonly connect?: ConnectOptionsInput;
  readonly server?: Omit<OnePortServerOptions, "handler" | "logger">;
  /** Overrides of the UNIMPLEMENTED chat service (tests that need a slow or custom RPC). */
  readonly chat?: Partial<ServiceImpl<typeof ChatService>>;
  /** Use Watch polling instead of subscribe. */
  readonly pollHealth?: boolean;
}

export const readyState: Readiness = {
  ready: true,
  products: 2,
  authMethods: ["jwt", "hmac"],
  secretsAgeSeconds: 12,
};

/**
 * The server as src/app.ts composes it, from the same functions (createDispatch: the gRPC fast path, the
 * Connect router and the REST transcoder; the edge with the access log and the header limit; the
 * one-port server), with the services tests control: health with a readiness they set, reflection, and the
 * UNIMPLEMENTED chat service (or overrides of it). On 127.0.0.1, port 0.
 */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const log = captureLog();
  const readiness = { current: readyState };
  const listeners = new Set<() => void>();
  const shutdown = new AbortController();
  const dispatch = createDispatch({
    // The server's outermost interceptor, so AppErrors become their wire errors as in the server.
    connectOptions: createConnectOptions({
      interceptors: [createWireErrorInterceptor()],
      shutdownSignal: shutdown.signal,
      ...options.connect,
    }),
    logger: log.logger,
    routes(router) {
      router.service(ChatService, { ...unimplementedChatService, ...options.chat });
      registerHealth(router, {
        readiness: () => readiness.current,
        version: "0.1.0-test",
        ...(options.pollHealth
          ? { pollIntervalMs: 20 }
          : {
              subscribe: (l: () => void) => {
                listeners.add(l);
                return () => listeners.delete(l);
              },
            }),
      });
      registerReflection(router);
    },
  });
  const edge = composeEdge({
    entries: [
      createAccessLogEdge({ logger: log.logger, gcpProjectId: undefined }),
      createHeaderLimitEdge({ maxHeaderBytes: options.server?.maxHeaderBytes ?? defaultMaxHeaderBytes }),
    ],
    dispatch,
    cutSignal: shutdown.signal,
  });
  const server = createOnePortServer({ handler: edge, logger: log.logger, ...options.server });
  const { port } = await server.listen(0, "127.0.0.1");
  return {
    port,
    baseUrl: `http://127.0.0.1:${port}`,
    server,
    log,
    readiness,
    notify: () => listeners.forEach((l) => l()),
    close: (graceMs = 1_000) => server.close(graceMs),
  };
}
