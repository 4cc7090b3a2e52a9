import { fromJson, getOption, type DescMethod, type JsonValue as PbJsonValue } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  ChatCompletionChunkSchema,
  ChatCompletionSchema,
  type ChatCompletionRequest,
  ChatService,
  ListModelsResponseSchema,
  ModelSchema,
} from "../../gen/apikeyserver/v1/chat_pb.js";
import { create } from "@bufbuild/protobuf";
import { http } from "../../gen/google/api/annotations_pb.js";
import { assertCanUseProduct, type Principal } from "../auth/index.js";
import { AppError, errorTable } from "../errors/index.js";
import type { ProductConfig, ProviderConfig } from "../secrets/types.js";
import { accessRecordKey } from "./access-record.js";
import type { ChatLimiter } from "../ratelimit/index.js";
import type { ChatUpstream, JsonObject, SecretsView, TokenUsage } from "./ports.js";
import { positiveInt } from "../lib/options.js";

export interface ChatServiceOptions {
  readonly secrets: SecretsView;
  /** Reads the authenticated caller from the call's context (set by the auth interceptor). */
  readonly caller: (ctx: HandlerContext) => Principal | undefined;
  readonly upstream: ChatUpstream;
  readonly limiter: ChatLimiter;
  /** Renders the request as the OpenAI JSON body (the REST JSON writer: nulls, omissions, numbers). */
  readonly toUpstreamJson: (request: ChatCompletionRequest) => JsonObject;
  /** Global cap on output tokens per request (API_KEY_SERVER_MAX_TOKENS). */
  readonly maxTokens: number;
}

const parseOptions = { ignoreUnknownFields: true } as const;

/**
 * ChatService (README, API). Each call runs these steps in order: the caller (authenticated by the
 * interceptor) → the product exists → the caller may use it → the model is one of the product's →
 * the `stream` flag fits the RPC → max tokens within the cap → rate limit → forward → map the answer.
 */
export function createChatService(options: ChatServiceOptions): ServiceImpl<typeof ChatService> {
  positiveInt("createChatService", "maxTokens", options.maxTokens);
  // A request with the wrong `stream` flag is told where to go instead, in terms every caller can use: the
  // RPC and its REST route (read once from the contract's google.api.http option, so it cannot drift).
  const unaryRoute = routeHint(ChatService.method.createChatCompletion);
  const streamRoute = routeHint(ChatService.method.streamChatCompletion);

  /** Steps shared by both chat RPCs, up to and including the rate limit. */
  function admit(request: ChatCompletionRequest, ctx: HandlerContext) {
    const { product, caller } = resolveProduct(request.product, ctx);
    const record = ctx.values.get(accessRecordKey);
    if (record) record.model = request.model;
    const provider = product.models.get(request.model);
    if (!provider) throw new AppError("model_not_supported", { param: "model" });
    return { product, caller, provider };
  }

  function resolveProduct(name: string, ctx: HandlerContext): { product: ProductConfig; caller: Principal } {
    const secrets = options.secrets();
    if (!secrets) throw new AppError("not_ready");
    const caller = options.caller(ctx);
    // The auth interceptor guarantees a caller on chat RPCs; its absence is a wiring fault, not the caller's.
    if (!caller) throw new AppError("unauthenticated", { cause: new Error("no caller in context") });
    const record = ctx.values.get(accessRecordKey);
    if (record) {
      record.product = name;
      record.caller = `${caller.kind}:${caller.id}`;
    }
    const product = secrets.products.get(name);
    if (!product) throw new AppError("product_not_found");
    assertCanUseProduct(caller, name);
    return { product, caller };
  }

  /** The cap for this request; throws when the caller asked for more. Returns the cap to send when it asked nothing. */
  function checkMaxTokens(request: ChatCompletionRequest, product: ProductConfig): number | undefined {
    const cap = Math.min(options.maxTokens, product.maxTokens ?? options.maxTokens);
    checkTokens("max_completion_tokens", request.maxCompletionTokens, cap);
    checkTokens("max_tokens", request.maxTokens, cap);
    return request.maxCompletionTokens === undefined && request.maxTokens === undefined ? cap : undefined;
  }

  function validateMessages(request: ChatCompletionRequest): void {
    if (request.messages.length === 0) {
      throw new AppError("invalid_argument", {
        message: "messages: must contain at least one message",
        param: "messages",
      });
    }
    request.messages.forEach((message, i) => {
      if (message.role === "") {
        throw new AppError("invalid_argument", {
          message: `messages[${i}].role: is required`,
          param: `messages[${i}].role`,
        });
      }
    });
  }

  /**
   * The upstream JSON body. A binary (gRPC) caller can send messages JSON cannot express, such as a NaN
   * number inside a google.protobuf.Struct; that is the caller's malformed field (400), not our fault.
   */
  function upstreamBody(request: ChatCompletionRequest): JsonObject {
    try {
      return options.toUpstreamJson(request);
    } catch (cause) {
      const detail = cause instanceof Error ? cause.message : String(cause);
      throw new AppError("invalid_argument", { message: `Invalid request: ${detail}`, cause });
    }
  }

  function callOptions(ctx: HandlerContext, maxTokensCap: number | undefined) {
    const timeoutMs = ctx.timeoutMs();
    return {
      signal: ctx.signal,
      deadlineMs: timeoutMs === undefined ? undefined : Date.now() + timeoutMs,
      maxTokensCap,
    };
  }

  function recordUsage(ctx: HandlerContext, usage: TokenUsage | undefined, upstreamLatencyMs?: number): void {
    const record = ctx.values.get(accessRecordKey);
    if (!record) return;
    if (upstreamLatencyMs !== undefined) record.upstreamLatencyMs = upstreamLatencyMs;
    if (usage) {
      record.promptTokens = usage.promptTokens;
      record.completionTokens = usage.completionTokens;
      record.totalTokens = usage.totalTokens;
    }
  }

  return {
    async createChatCompletion(request, ctx) {
      const { product, caller, provider } = admit(request, ctx);
      if (request.stream === true) {
        throw new AppError("streaming_not_supported", {
          message: streamRoute(request.product),
          param: "stream",
        });
      }
      const cap = checkMaxTokens(request, product);
      validateMessages(request);
      await options.limiter.admit(product, caller);

      const result = await options.upstream.complete(provider, upstreamBody(request), callOptions(ctx, cap));
      recordUsage(ctx, result.usage, result.upstreamLatencyMs);
      if (result.usage) await options.limiter.charge(product, caller, result.usage.totalTokens);
      return parseProviderJson(ChatCompletionSchema, result.body, provider);
    },

    async *streamChatCompletion(request, ctx) {
      const { product, caller, provider } = admit(request, ctx);
      if (request.stream === false) {
        throw new AppError("streaming_required", { message: unaryRoute(request.product), param: "stream" });
      }
      const cap = checkMaxTokens(request, product);
      validateMessages(request);
      await options.limiter.admit(product, caller);

      const started = performance.now();
      let first = true;
      let usage: TokenUsage | undefined;
      for await (const chunk of options.upstream.stream(
        provider,
        upstreamBody(request),
        callOptions(ctx, cap),
      )) {
        if (first) {
          recordUsage(ctx, undefined, performance.now() - started);
          first = false;
        }
        const message = parseProviderJson(ChatCompletionChunkSchema, chunk, provider);
        if (message.usage) {
          usage = {
            promptTokens: message.usage.promptTokens,
            completionTokens: message.usage.completionTokens,
            totalTokens: message.usage.totalTokens,
          };
        }
        yield message;
      }
      recordUsage(ctx, usage);
      if (usage) await options.limiter.charge(product, caller, usage.totalTokens);
    },

    listModels(request, ctx) {
      const { product } = resolveProduct(request.product, ctx);
      return create(ListModelsResponseSchema, {
        object: "list",
        data: [...product.models].map(([id, provider]) =>
          create(ModelSchema, { id, object: "model", created: 0n, ownedBy: provider.kind }),
        ),
      });
    },
  };
}

/**
 * The message for a call sent to the wrong chat RPC: the table's text (which callers of the earlier server
 * match on) followed by the RPC to use and its REST route for the product, e.g. `Streaming not supported:
 * use StreamChatCompletion (REST: POST /v1/chat/product-dev:stream)`.
 */
function routeHint(target: DescMethod): (product: string) => string {
  const { message } =
    errorTable[target.methodKind === "unary" ? "streaming_required" : "streaming_not_supported"];
  const pattern = getOption(target, http).pattern;
  if (pattern.case !== "post") return () => `${message}: use ${target.name}`;
  const template = pattern.value;
  return (product) => `${message}: use ${target.name} (REST: POST ${template.replace("{product}", product)})`;
}

function checkTokens(field: string, value: number | undefined, cap: number): void {
  if (value === undefined) return;
  if (value <= 0)
    throw new AppError("invalid_argument", { message: `${field} must be a positive integer`, param: field });
  if (value > cap) {
    throw new AppError("invalid_argument", {
      message: `${field} exceeds the maximum of ${cap} tokens`,
      param: field,
    });
  }
}

/** A provider answer that does not fit the OpenAI shape is the provider's fault: 502, cause logged. */
function parseProviderJson<S extends typeof ChatCompletionSchema | typeof ChatCompletionChunkSchema>(
  schema: S,
  body: JsonObject,
  provider: ProviderConfig,
) {
  try {
    return fromJson(schema, body as PbJsonValue, parseOptions);
  } catch (cause) {
    throw new AppError("upstream_error", {
      cause: new Error(
        `provider ${provider.name} (${provider.kind}) answered JSON that is not a chat completion`,
        {
          cause,
        },
      ),
    });
  }
}
