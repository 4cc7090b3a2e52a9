import type { ServiceImpl } from "@connectrpc/connect";
import { ChatService } from "../../gen/apikeyserver/v1/chat_pb.js";
import { createServer } from "../../src/server.js";
import { registerHealth, type Readiness } from "../../src/services/health.js";
import { registerReflection } from "../../src/services/reflection.js";
import { type ConnectOptionsInput } from "../../src/protocols/connect-options.js";
import { type OnePortServerOptions } from "../../src/transport/one-port.js";
import { createWireErrorInterceptor } from "../../src/call/wire-error.js";
import { captureLog, type CapturedLog } from "./log-capture.js";
import { unimplementedChatService } from "./unimplemented-chat.js";

export interface TestServer {
  readonly port: number;
  readonly baseUrl: string;
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
 * The server as src/app.ts builds it, by the same function (createServer, src/server.ts: the one-port
 * server, the edge, the dispatcher with the codecs on the call pipeline and the fallback lane), with the
 * services tests control: health with a readiness they set, reflection, and the UNIMPLEMENTED chat
 * service (or overrides of it), behind the server's outermost interceptor. On 127.0.0.1, port 0.
 */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const log = captureLog();
  const readiness = { current: readyState };
  const listeners = new Set<() => void>();
  const { interceptors: _interceptors, shutdownSignal: _shutdown, ...limits } = options.connect ?? {};
  const { maxHeaderBytes, ...server } = options.server ?? {};
  const app = createServer({
    logger: log.logger,
    // The server's outermost interceptor, so AppErrors become their wire errors as in the server.
    interceptors: [createWireErrorInterceptor(), ...(options.connect?.interceptors ?? [])],
    limits,
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
    accessLog: { gcpProjectId: undefined },
    ...(maxHeaderBytes === undefined ? {} : { maxHeaderBytes }),
    server,
  });
  const { port } = await app.listen(0, "127.0.0.1");
  return {
    port,
    baseUrl: `http://127.0.0.1:${port}`,
    log,
    readiness,
    notify: () => listeners.forEach((l) => l()),
    close: async (graceMs = 1_000) => void (await app.close(graceMs)),
  };
}
