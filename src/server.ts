import type { ConnectRouter, Interceptor, ServiceImpl, ServiceImplSpec } from "@connectrpc/connect";
import type { ChatService } from "../gen/apikeyserver/v1/chat_pb.js";
import type { EmbeddingService } from "../gen/apikeyserver/v1/embeddings_pb.js";
import type { Auth } from "./auth/index.js";
import { createCallPipeline } from "./call/pipeline.js";
import {
  composeEdge,
  createAccessLogEdge,
  createDrainCount,
  createHeaderLimitEdge,
  shutdownCutError,
  type DrainReport,
  type AccessLogEdgeOptions,
  type EdgeEntry,
} from "./edge/index.js";
import { createOpenAiEdge } from "./protocols/openai/openai-handler.js";
import { createAnthropicEdge } from "./protocols/anthropic/anthropic-handler.js";
import type { Messages } from "./protocols/anthropic/messages.js";
import { recordServices } from "./services/record-services.js";
import { type JsonChat } from "./services/chat-json.js";
import type { JsonResponses } from "./services/responses/responses-json.js";
import { createCallSignals } from "./call/call-registry.js";
import type { Logger } from "./log/index.js";
import { createConnectOptions, type ConnectOptionsInput } from "./protocols/connect-options.js";
import { createDispatch } from "./protocols/dispatch.js";
import {
  createOnePortServer,
  defaultMaxHeaderBytes,
  type OnePortServerOptions,
} from "./transport/one-port.js";

export interface ServerOptions {
  readonly logger: Logger;
  /** Registers the services on the router (src/app.ts: ChatService, health, reflection). */
  readonly routes: (router: ConnectRouter) => void;
  /** Every call's interceptors, outermost first (their order is written in src/app.ts). */
  readonly interceptors: readonly Interceptor[];
  /** Auth's precheck over the raw request, run by both lanes before any decode (src/auth/interceptor.ts). */
  readonly precheck?: Auth["precheck"] | undefined;
  /** Message and deadline limits (src/protocols/connect-options.ts). */
  readonly limits?: Omit<ConnectOptionsInput, "interceptors" | "shutdownSignal">;
  /**
   * The chat RPCs as the JSON surfaces run them: the ChatService implementation registered by `routes` and
   * its JSON form (src/services/chat-json.ts). With it, REST's chat routes take JSON in and out, and the
   * OpenAI-compatible surface is served under `/openai/`.
   */
  readonly chat?:
    | {
        readonly impl: ServiceImpl<typeof ChatService>;
        readonly json: JsonChat;
        /** OpenAI's Responses API on the same core; with it, `/openai/<product>/v1/responses` is served. */
        readonly responses?: JsonResponses | undefined;
      }
    | undefined;
  /**
   * The EmbeddingService implementation registered by `routes`: with it, the OpenAI-compatible surface also
   * serves `POST /openai/<product>/v1/embeddings` (src/protocols/openai/embeddings-route.ts).
   */
  readonly embeddings?: ServiceImpl<typeof EmbeddingService> | undefined;
  /**
   * The Anthropic Messages API calls (src/protocols/anthropic/messages.ts); with `chat`, the surface is
   * served under `/anthropic/` (README, "Anthropic Messages API").
   */
  readonly anthropic?: { readonly messages: Messages } | undefined;
  readonly accessLog: Omit<AccessLogEdgeOptions, "logger">;
  /**
   * Edge entries after the access log, outermost first (metrics, CORS), given the services registered
   * (the metrics entry tells streams from unary calls by them).
   */
  readonly entries?: (services: readonly ServiceImplSpec[]) => readonly EdgeEntry[];
  /** Largest request head, on both HTTP versions (431 above it; default 16 KiB). */
  readonly maxHeaderBytes?: number;
  /** The one-port server's timeouts. */
  readonly server?: Omit<OnePortServerOptions, "handler" | "logger" | "maxHeaderBytes">;
}

export interface Server {
  /** Starts listening on the one port; resolves with the bound port. */
  listen(port: number, host?: string): Promise<{ port: number }>;
  /**
   * Stops accepting and drains in-flight calls for up to `graceMs`; calls still running a moment before
   * the end are cut with UNAVAILABLE so each ends with its terminal error on the wire. Resolves with how
   * the requests open during the grace ended: completed or cut.
   */
  close(graceMs: number): Promise<DrainReport>;
}

/**
 * The request path from the port to the services, as the server runs it (docs/architecture.md, "The
 * request path"): the one-port server, the edge list (access log first, then `entries`, the header
 * limit, the OpenAI-compatible surface), the dispatcher with its two lanes (the codecs on the one call
 * pipeline, connect-node's handlers as the fallback), the shutdown signal and the call registry. The
 * composition root (src/app.ts) builds it from the configuration; the tests build it with their own
 * services, so they run what ships.
 */
export function createServer(options: ServerOptions): Server {
  const { logger, interceptors, precheck, chat } = options;
  const shutdown = new AbortController();
  const drain = createDrainCount();
  const services: ServiceImplSpec[] = [];
  const connectOptions = createConnectOptions({
    ...options.limits,
    interceptors,
    shutdownSignal: shutdown.signal,
  });
  // The one pipeline every call of every codec passes, with the one registry of the running calls.
  const pipeline = createCallPipeline({
    interceptors,
    registry: createCallSignals(shutdown.signal),
    precheck,
    logger,
  });
  const dispatch = createDispatch({
    connectOptions,
    pipeline,
    logger,
    precheck,
    chatJson: chat?.json,
    // Recorded: the codecs and the metrics entry use the registered methods.
    routes: (router) => options.routes(recordServices(router, services)),
  });
  // The edge list, outermost first: every request on the port passes it. The access log stays first so
  // it sees every answer; the header limit comes after the entries that may answer a preflight.
  const edge = composeEdge({
    entries: [
      createAccessLogEdge({ logger, ...options.accessLog }),
      // Counts how the requests open during the shutdown grace end (the "Server stopped" line).
      drain.entry,
      ...(options.entries?.(services) ?? []),
      createHeaderLimitEdge({ maxHeaderBytes: options.maxHeaderBytes ?? defaultMaxHeaderBytes }),
      // Answers /openai/<product>/v1/... itself (README, "OpenAI-compatible base URL") on the same
      // pipeline, with the ChatService implementation the router serves.
      ...(chat === undefined
        ? []
        : [
            createOpenAiEdge({
              chat: chat.impl,
              chatJson: chat.json,
              embeddings: options.embeddings,
              responses: chat.responses,
              pipeline,
              maxBodyBytes: connectOptions.readMaxBytes,
              maxTimeoutMs: connectOptions.maxTimeoutMs,
            }),
          ]),
      // Answers /anthropic/<product>/v1/... itself (README, "Anthropic Messages API") on the same pipeline.
      ...(chat === undefined || options.anthropic === undefined
        ? []
        : [createAnthropicEdge({ chat: chat.impl, messages: options.anthropic.messages, pipeline })]),
    ],
    dispatch,
    cutSignal: shutdown.signal,
  });
  const server = createOnePortServer({
    ...options.server,
    ...(options.maxHeaderBytes === undefined ? {} : { maxHeaderBytes: options.maxHeaderBytes }),
    handler: edge,
    logger,
  });
  return {
    listen: (port, host) => server.listen(port, host),
    async close(graceMs) {
      drain.start();
      const timer = setTimeout(
        () => shutdown.abort(shutdownCutError),
        Math.max(0, graceMs - cutMarginMs(graceMs)),
      );
      try {
        await server.close(graceMs);
      } finally {
        clearTimeout(timer);
      }
      return drain.report();
    },
  };
}

/** How long before the end of the shutdown grace running calls are cut: 500 ms, or half of a short grace. */
function cutMarginMs(graceMs: number): number {
  return Math.min(500, Math.floor(graceMs / 2));
}
