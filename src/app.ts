import { cors as connectCors, type Interceptor, type ServiceImplSpec } from "@connectrpc/connect";
import type { Redis } from "ioredis";
import type { Dispatcher } from "undici";
import { ChatCompletionRequestSchema, ChatService } from "../gen/apikeyserver/v1/chat_pb.js";
import { EmbeddingService } from "../gen/apikeyserver/v1/embeddings_pb.js";
import { createEmbeddingService } from "./services/embedding-service.js";
import {
  createAuth,
  createMemoryNonceStore,
  defaultPublicServices,
  hmacHeaders,
  principalKey,
} from "./auth/index.js";
import type { Config } from "./config/index.js";
import { createServer } from "./server.js";
import { createCorsEdge, type DrainReport } from "./edge/index.js";
import { createJsonChat } from "./services/chat-json.js";
import { createJsonResponses } from "./services/responses/responses-json.js";
import { toRestJson } from "./json/index.js";
import { createCircuitBreaker, type BreakerState } from "./lib/circuit-breaker.js";
import type { Logger } from "./log/index.js";
import { createMetricsEdge, type Metrics } from "./metrics/index.js";
import {
  createCallGate,
  createConcurrencyInterceptor,
  createMemorySpendStore,
  createRedisNonceStore,
  createRedisSpendStore,
  rateLimitHeaderNames,
} from "./limits/index.js";
import { createChatCore, createChatService } from "./services/chat-service.js";
import type { JsonObject } from "./chat/ports.js";
import { createWireErrorInterceptor } from "./call/wire-error.js";
import type { SecretStore } from "./secrets/index.js";
import { registerHealth } from "./services/health.js";
import { createUsageService } from "./services/usage-service.js";
import { UsageService } from "../gen/apikeyserver/v1/usage_pb.js";
import { registerReflection } from "./services/reflection.js";
import type { Readiness } from "./services/health.js";
import { createForwarder } from "./upstream/index.js";
import { createMessages, tokenCountHeader } from "./protocols/anthropic/messages.js";

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
  /**
   * Called when the Redis circuit breaker changes state (logged either way; `metrics`, when given, records
   * it too).
   */
  readonly onRedisBreakerStateChange?: (state: BreakerState, previous: BreakerState) => void;
  /** Recorded when given (API_KEY_SERVER_METRICS_PORT set); served on its own port by main.ts. */
  readonly metrics?: Metrics | undefined;
  /**
   * More per-call rules, run after the built-in interceptors (innermost) on every call of every protocol
   * and surface. None in production; the tests add one to show a rule reaches every route.
   */
  readonly interceptors?: readonly Interceptor[];
}

export interface App {
  /** Starts listening on the one port; resolves with the bound port. */
  listen(port: number, host?: string): Promise<{ port: number }>;
  /**
   * Drains in-flight calls for up to `graceMs`, then closes everything the app created (not
   * `secrets`/`redis`). Resolves with how the requests open during the grace ended: completed or cut.
   */
  close(graceMs: number): Promise<DrainReport>;
}

/**
 * The whole server, wired from typed options: ChatService, health and reflection on one Connect router;
 * the REST transcoder as the router's fallback; the one-port server in front. Reads no environment, so
 * tests build it in-process with their own config, secrets and upstream.
 */
export function createApp(options: AppOptions): App {
  const { config, logger, secrets, redis, metrics } = options;

  const forwarder = createForwarder({
    timeoutMs: config.requestTimeoutMs,
    streamIdleTimeoutMs: config.streamIdleTimeoutMs,
    logger,
    observer: metrics?.upstreamCallEnded,
    ...(options.upstreamDispatcher ? { dispatcher: options.upstreamDispatcher } : {}),
  });

  // One breaker for both users of the one Redis: a hung Redis (every command waiting for its timeout) is
  // noticed after a few calls, and from then on calls use the local fallback at once (docs/ratelimit.md).
  const breaker =
    redis &&
    createCircuitBreaker({
      name: "Redis",
      probe: () => redis.ping(),
      logger,
      onStateChange: (state, previous) => {
        metrics?.redisBreakerChanged(state, previous);
        options.onRedisBreakerStateChange?.(state, previous);
      },
    });
  // A reconnected client is proof enough that Redis is back (the probe is for a connection that hangs).
  redis?.on("ready", () => breaker?.reset("connection ready"));
  const memoryNonces = createMemoryNonceStore({});
  const nonceStore = redis
    ? createRedisNonceStore({
        client: redis,
        fallback: memoryNonces,
        logger,
        keyPrefix: config.redisKeyPrefix,
        ...(breaker ? { breaker } : {}),
        ...(metrics ? { onFallback: metrics.redisFallback("nonce_store") } : {}),
      })
    : memoryNonces;
  // Rate limits and budgets in one store: with Redis, one script admits a call (rate checks and the
  // budget reservation) and one settles it (docs/budgets.md); the memory store is the fallback.
  const spendStore = redis
    ? createRedisSpendStore({
        client: redis,
        fallback: createMemorySpendStore({ source: "fallback" }),
        logger,
        keyPrefix: config.redisKeyPrefix,
        breaker,
        onFallback: metrics?.redisFallback("rate_limiter"),
        onBudgetFallback: metrics?.redisFallback("budget"),
      })
    : createMemorySpendStore({});
  const gate = createCallGate({
    store: spendStore,
    defaults: config.rateLimit,
    logger,
    onDecision: metrics?.rateLimitDecided,
    onBudgetRefused: metrics?.budgetRefused,
  });

  // The chat steps, once: the protobuf service (gRPC, Connect) and the JSON surfaces (REST, OpenAI) run them.
  const chatCore = createChatCore({
    secrets: () => secrets.current(),
    caller: (ctx) => ctx.values.get(principalKey),
    upstream: forwarder,
    gate,
    onCost: metrics?.costAdded,
    maxTokens: config.maxTokens,
  });
  const chat = createChatService({
    core: chatCore,
    toUpstreamJson: (request) => {
      // A rest copy rather than `delete`, which would leave the object in V8's slow dictionary mode for
      // the JSON.stringify that follows.
      const { product: _product, ...json } = toRestJson(ChatCompletionRequestSchema, request) as JsonObject;
      return json;
    },
  });

  // Embeddings on every protocol and the OpenAI surface, admitted by the same core (src/services/embedding-service.ts).
  const embeddings = createEmbeddingService({ core: chatCore, upstream: forwarder });

  // JSON in, JSON out for the JSON surfaces (docs/architecture.md): the same core, no protobuf round trip.
  const chatJson = createJsonChat(chatCore);

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
  // access line); auth guards the handlers; the concurrency bound counts the caller auth found. REST calls
  // and every codec of the call pipeline run the same list, and so does the fallback lane.
  const auth = createAuth({
    secrets: () => secrets.current(),
    jwt: {
      issuer: config.jwt.issuer,
      audience: config.jwt.audience,
      clockToleranceSeconds: config.jwt.clockToleranceSeconds,
      maxTokenAgeSeconds: config.jwt.maxAgeSeconds,
    },
    hmac: {
      windowSeconds: config.hmacWindowSeconds,
      nonceStore,
      requireNonce: config.hmacRequireNonce,
    },
    publicServices: defaultPublicServices,
    logger,
    onFailure: metrics?.authFailed,
  });
  const interceptors = [
    createWireErrorInterceptor(),
    auth.interceptor,
    createConcurrencyInterceptor({
      maxPerCaller: config.maxConcurrentCallsPerCaller,
      caller: (values) => {
        const principal = values.get(principalKey);
        return principal && `${principal.kind}:${principal.id}`;
      },
    }),
    ...(options.interceptors ?? []),
  ];

  const server = createServer({
    logger,
    interceptors,
    // Both lanes run auth's body-free checks before they read (and so parse) a request body.
    precheck: auth.precheck,
    limits: { bodyLimitBytes: config.maxBodyBytes },
    chat: { impl: chat, json: chatJson, responses: createJsonResponses(chatCore) },
    embeddings,
    // The Anthropic Messages API: native to anthropic providers (the forwarder's passthrough), translated
    // through the same chat core for every other.
    anthropic: { messages: createMessages(chatCore, forwarder) },
    routes(router) {
      router.service(ChatService, chat);
      router.service(EmbeddingService, embeddings);
      router.service(
        UsageService,
        createUsageService({ core: chatCore, caller: (ctx) => ctx.values.get(principalKey), gate }),
      );
      registerHealth(router, {
        readiness,
        version: options.version,
        subscribe: (listener) => secrets.onChange(() => listener()),
      });
      if (config.reflection) registerReflection(router);
    },
    accessLog: {
      gcpProjectId: gcpProjectOf(config),
      quietServices: defaultPublicServices,
      trustedProxies: config.trustedProxies,
    },
    entries: (services) => [
      // Right after the access log: it counts every request, the header-limit refusals included.
      ...(metrics ? [createMetricsEdge({ metrics, streamingRpcs: streamingRpcsOf(services) })] : []),
      // Before anything that may answer, so every answer an allowed page gets is readable by it, and a
      // preflight is answered before the header limit, routing, auth or any handler.
      createCorsEdge({ origins: config.corsOrigins, ...webClientHeaders }),
    ],
    server: {
      idleTimeoutMs: config.idleTimeoutMs,
      // The whole request must arrive within the body deadline (408 otherwise); headers within 10 s of it.
      requestTimeoutMs: config.bodyTimeoutMs,
      headersTimeoutMs: Math.min(10_000, config.bodyTimeoutMs),
    },
  });

  return {
    listen: (port, host) => server.listen(port, host),
    async close(graceMs) {
      let report: DrainReport;
      try {
        report = await server.close(graceMs);
      } finally {
        await forwarder.close();
      }
      // The last responses' close events are emitted on the next tick after their connections are gone.
      // Not a whole event-loop turn: a shutdown that follows a failed start must reach process.exit with no
      // macrotask in between (the Secret Manager client without credentials leaves a rejection that Node
      // would otherwise report as unhandled and crash on).
      await new Promise((resolve) => process.nextTick(resolve));
      return report;
    },
  };
}

/**
 * What a page may send and read across origins (README, "Web clients"): connect-es's lists for the Connect
 * and gRPC-Web protocols, the two ways to authenticate, the headers the official `openai` SDK adds in a
 * browser (without them its preflight fails), and the rate-limit headers a page needs to back off.
 */
const webClientHeaders = {
  allowedMethods: connectCors.allowedMethods,
  allowedHeaders: [
    ...connectCors.allowedHeaders,
    "authorization",
    ...Object.values(hmacHeaders),
    "x-stainless-lang",
    "x-stainless-package-version",
    "x-stainless-os",
    "x-stainless-arch",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-retry-count",
    "x-stainless-timeout",
    "x-stainless-helper-method",
    // The official @anthropic-ai/sdk in a browser (`dangerouslyAllowBrowser`): the caller's JWT travels in
    // x-api-key on the Anthropic surface (src/protocols/anthropic/).
    "x-api-key",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
  ],
  // x-request-id: the id of the request, to quote when reporting a problem (README, Logs); retry-after-ms:
  // the delay both SDKs prefer to Retry-After; x-token-count: whether count_tokens is an estimate.
  exposedHeaders: [
    ...connectCors.exposedHeaders,
    ...rateLimitHeaderNames,
    "x-request-id",
    "retry-after-ms",
    tokenCountHeader,
  ],
} as const;

/** `package.Service/Method` of every registered streaming RPC (as `Exchange.rpc` names them). */
function streamingRpcsOf(services: readonly ServiceImplSpec[]): string[] {
  return services.flatMap(({ service }) =>
    service.methods.filter((m) => m.methodKind !== "unary").map((m) => `${service.typeName}/${m.name}`),
  );
}

function gcpProjectOf(config: Config): string | undefined {
  return config.secrets.source.kind === "secret-manager" ? config.secrets.source.projectId : undefined;
}
