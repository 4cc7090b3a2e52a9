import type { ServiceImplSpec } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import type { Redis } from "ioredis";
import type { Dispatcher } from "undici";
import { ChatCompletionRequestSchema, ChatService } from "../gen/apikeyserver/v1/chat_pb.js";
import {
  createAuthInterceptor,
  createMemoryNonceStore,
  defaultPublicServices,
  principalKey,
} from "./auth/index.js";
import type { Config } from "./config/index.js";
import {
  composeEdge,
  createAccessLogEdge,
  createHeaderLimitEdge,
  shutdownCutError,
  type EdgeHandler,
} from "./edge/index.js";
import {
  createHttpCaller,
  createOpenAiEdge,
  createRestHandler,
  recordServices,
  toRestJson,
} from "./http/index.js";
import type { Logger } from "./log/index.js";
import {
  createChatLimiter,
  createMemoryLimiter,
  createRedisLimiter,
  createRedisNonceStore,
} from "./ratelimit/index.js";
import { createChatService } from "./rpc/chat-service.js";
import type { JsonObject } from "./rpc/ports.js";
import { createWireErrorInterceptor } from "./rpc/wire-error.js";
import type { SecretStore } from "./secrets/index.js";
import {
  createConnectDispatch,
  createConnectOptions,
  createGrpcUnaryHandler,
  defaultMaxHeaderBytes,
  createOnePortServer,
  registerHealth,
  registerReflection,
} from "./server/index.js";
import type { Readiness } from "./server/index.js";
import { createForwarder } from "./upstream/index.js";

export interface AppOptions {
  readonly config: Config;
  readonly logger: Logger;
  readonly secrets: SecretStore;
  /** Reported by /health. */
  readonly version: string;
  /** A fail-fast client (createRedisClient) when REDIS_URL is set: limits and nonces are then shared. */
  readonly redis?: Redis | undefined;
  /** The upstream HTTP dispatcher; by default the forwarder creates its own keep-alive pool. */
  readonly upstreamDispatcher?: Dispatcher;
}

export interface App {
  /** Starts listening on the one port; resolves with the bound port. */
  listen(port: number, host?: string): Promise<{ port: number }>;
  /** Drains in-flight calls for up to `graceMs`, then closes everything the app created (not `secrets`/`redis`). */
  close(graceMs: number): Promise<void>;
}

/**
 * The whole server, wired from typed options: ChatService, health and reflection on one Connect router;
 * the REST transcoder as the router's fallback; the one-port server in front. Reads no environment, so
 * tests build it in-process with their own config, secrets and upstream.
 */
export function createApp(options: AppOptions): App {
  const { config, logger, secrets, redis } = options;

  const forwarder = createForwarder({
    timeoutMs: config.requestTimeoutMs,
    streamIdleTimeoutMs: config.streamIdleTimeoutMs,
    logger,
    ...(options.upstreamDispatcher ? { dispatcher: options.upstreamDispatcher } : {}),
  });

  const memoryNonces = createMemoryNonceStore({});
  const nonceStore = redis
    ? createRedisNonceStore({
        client: redis,
        fallback: memoryNonces,
        logger,
        keyPrefix: config.redisKeyPrefix,
      })
    : memoryNonces;
  const limiter = redis
    ? createRedisLimiter({
        client: redis,
        fallback: createMemoryLimiter({ source: "fallback" }),
        logger,
        keyPrefix: config.redisKeyPrefix,
      })
    : createMemoryLimiter({});
  const chatLimiter = createChatLimiter({
    limiter,
    defaults: config.rateLimit,
    logger,
  });

  const chat = createChatService({
    secrets: () => secrets.current(),
    caller: (ctx) => ctx.values.get(principalKey),
    upstream: forwarder,
    limiter: chatLimiter,
    toUpstreamJson: (request) => {
      // A rest copy rather than `delete`, which would leave the object in V8's slow dictionary mode for
      // the JSON.stringify that follows.
      const { product: _product, ...json } = toRestJson(ChatCompletionRequestSchema, request) as JsonObject;
      return json;
    },
    maxTokens: config.maxTokens,
  });

  const readiness = (): Readiness => {
    const current = secrets.current();
    if (!current) return { ready: false, products: 0, authMethods: [], secretsAgeSeconds: 0 };
    const authMethods: string[] = [];
    if (current.jwtKeys) authMethods.push("jwt");
    if (current.hmacKeys) authMethods.push("hmac");
    return {
      ready: true,
      products: current.products.size,
      authMethods,
      secretsAgeSeconds: Math.floor((Date.now() - current.loadedAt) / 1000),
    };
  };

  // Interceptor order, outermost first: the one place errors become wire errors (and are recorded for the
  // access line); auth guards the handlers. REST calls and the gRPC fast path run the same list.
  const interceptors = [
    createWireErrorInterceptor(),
    createAuthInterceptor({
      secrets: () => secrets.current(),
      jwt: {
        issuer: config.jwt.issuer,
        audience: config.jwt.audience,
        clockToleranceSeconds: config.jwt.clockToleranceSeconds,
        maxTokenAgeSeconds: config.jwt.maxAgeSeconds,
      },
      hmac: { windowSeconds: config.hmacWindowSeconds, nonceStore },
      publicServices: defaultPublicServices,
      logger,
    }),
  ];

  const shutdown = new AbortController();
  // Every service registered on the router is recorded for the REST transcoder, which invokes the same
  // implementations in-process through the same interceptors.
  const services: ServiceImplSpec[] = [];
  const connectOptions = createConnectOptions({
    bodyLimitBytes: config.maxBodyBytes,
    interceptors,
    shutdownSignal: shutdown.signal,
  });
  // connect-node's own default, named so the gRPC fast path negotiates from the same list.
  const acceptCompression = [compressionGzip, compressionBrotli];
  const connect = createConnectDispatch({
    ...connectOptions,
    acceptCompression,
    logger,
    routes(connectRouter) {
      const router = recordServices(connectRouter, services);
      router.service(ChatService, chat);
      registerHealth(router, {
        readiness,
        version: options.version,
        subscribe: (listener) => secrets.onChange(() => listener()),
      });
      registerReflection(router);
    },
  });
  // REST and the OpenAI-compatible surface invoke the very implementations registered above, in-process,
  // through the same interceptors, deadline and shutdown handling (src/http/http-call.ts).
  const httpCalls = {
    interceptors,
    maxTimeoutMs: connectOptions.maxTimeoutMs,
    shutdownSignal: shutdown.signal,
    logger,
  };
  const rest = createRestHandler({ ...httpCalls, services, maxBodyBytes: config.maxBodyBytes });
  const openai = createOpenAiEdge({
    services,
    caller: createHttpCaller(httpCalls),
    maxBodyBytes: config.maxBodyBytes,
  });

  // Unary gRPC over HTTP/2 skips connect-node's streaming pipeline (same context, interceptors, limits
  // and trailers); everything else goes to the Connect router, whose fallback is the REST transcoder.
  const grpcUnary = createGrpcUnaryHandler({
    services,
    interceptors,
    readMaxBytes: connectOptions.readMaxBytes,
    writeMaxBytes: connectOptions.writeMaxBytes,
    maxTimeoutMs: connectOptions.maxTimeoutMs,
    acceptCompression,
    shutdownSignal: shutdown.signal,
  });
  // The innermost edge handler: unary gRPC over HTTP/2 takes the fast path, the Connect router takes its
  // RPC paths, the REST transcoder takes the rest (and answers 404 for unknown paths).
  const dispatch: EdgeHandler = (exchange) => {
    if (grpcUnary(exchange) || connect(exchange)) return;
    rest(exchange);
  };
  // The edge list, outermost first: every request on the port passes it (docs/architecture.md). New
  // cross-cutting entries (CORS, metrics, the OpenAI-compatible route) go after the access log, which
  // must stay first so it sees every answer, theirs included.
  const edge = composeEdge({
    entries: [
      createAccessLogEdge({
        logger,
        gcpProjectId: gcpProjectOf(config),
        quietServices: defaultPublicServices,
      }),
      createHeaderLimitEdge({ maxHeaderBytes: defaultMaxHeaderBytes }),
      // Answers /openai/<product>/v1/... itself (README, "OpenAI-compatible base URL").
      openai,
    ],
    dispatch,
    cutSignal: shutdown.signal,
  });
  const server = createOnePortServer({ handler: edge, logger, idleTimeoutMs: config.idleTimeoutMs });

  return {
    listen: (port, host) => server.listen(port, host),
    async close(graceMs) {
      // Calls still running when the grace is nearly over are cut with UNAVAILABLE (retryable) a moment
      // before the server destroys the connections, so each gets its terminal error on the wire (the end
      // of an SSE stream, a Connect end-of-stream error, gRPC status 14) instead of a silent truncation.
      const timer = setTimeout(
        () => shutdown.abort(shutdownCutError),
        Math.max(0, graceMs - cutMarginMs(graceMs)),
      );
      try {
        await server.close(graceMs);
      } finally {
        clearTimeout(timer);
        await forwarder.close();
      }
    },
  };
}

/** How long before the end of the shutdown grace running calls are cut: 500 ms, or half of a short grace. */
function cutMarginMs(graceMs: number): number {
  return Math.min(500, Math.floor(graceMs / 2));
}

function gcpProjectOf(config: Config): string | undefined {
  return config.secrets.source.kind === "secret-manager" ? config.secrets.source.projectId : undefined;
}
