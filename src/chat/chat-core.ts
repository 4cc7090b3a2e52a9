import { getOption, type DescMethod } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { ChatService } from "../../gen/apikeyserver/v1/chat_pb.js";
import { http } from "../../gen/google/api/annotations_pb.js";
import { assertCanUseProduct, type Principal } from "../auth/index.js";
import { AppError } from "../errors/index.js";
import type { ChatLimiter } from "../limits/index.js";
import type { ProductConfig, ProviderConfig } from "../secrets/types.js";
import { positiveInt } from "../lib/options.js";
import { accessRecordKey } from "../edge/access-record.js";
import type { ChatUpstream, JsonObject, SecretsView, TokenUsage } from "./ports.js";

export interface ChatCoreOptions {
  readonly secrets: SecretsView;
  /** Reads the authenticated caller from the call's context (set by the auth interceptor). */
  readonly caller: (ctx: HandlerContext) => Principal | undefined;
  readonly upstream: ChatUpstream;
  readonly limiter: ChatLimiter;
  /** Global cap on output tokens per request (API_KEY_SERVER_MAX_TOKENS). */
  readonly maxTokens: number;
}

/**
 * What the chat steps read of a request, whatever carried it: a protobuf message (gRPC, Connect) or the
 * caller's JSON (REST, the OpenAI-compatible surface) (docs/architecture.md, "One chat core, two forms").
 */
export interface ChatRequestView {
  readonly product: string;
  readonly model: string;
  readonly stream: boolean | undefined;
  readonly maxTokens: number | undefined;
  readonly maxCompletionTokens: number | undefined;
  readonly messageCount: number;
  /** The role of message `i`, "" when it has none. */
  role(i: number): string;
  /** The OpenAI body for the provider, without `product`; throws AppError `invalid_argument` when it cannot be built. */
  upstreamBody(): JsonObject;
}

/** The provider's unary answer in the caller's form; throws AppError `upstream_error` when it is no chat completion. */
export type AnswerCodec<T> = (body: JsonObject, provider: ProviderConfig) => T;

/** One provider chunk in the caller's form, and its usage; throws like AnswerCodec. */
export type ChunkCodec<T> = (
  chunk: JsonObject,
  provider: ProviderConfig,
) => { readonly value: T; readonly usage: TokenUsage | undefined };

/** The chat steps, once, for every protocol. */
export interface ChatCore {
  complete<T>(request: ChatRequestView, ctx: HandlerContext, answer: AnswerCodec<T>): Promise<T>;
  stream<T>(request: ChatRequestView, ctx: HandlerContext, chunk: ChunkCodec<T>): AsyncGenerator<T>;
  /** The product's configuration after the product steps (it exists, the caller may use it). */
  product(name: string, ctx: HandlerContext): ProductConfig;
}

/**
 * The chat steps (README, API), one implementation that every protocol runs: the caller (authenticated by
 * the interceptor) → the product exists → the caller may use it → the model is one of the product's →
 * the `stream` flag fits the RPC → max tokens within the cap → the messages → rate limit → forward →
 * usage and charge. Errors are AppErrors, turned into wire errors by the wire-error interceptor. What
 * differs per protocol is only the request view and the codec of the provider's answer.
 */
export function createChatCore(options: ChatCoreOptions): ChatCore {
  positiveInt("createChatCore", "maxTokens", options.maxTokens);
  // A request with the wrong `stream` flag is told where to go instead, in terms every caller can use: the
  // RPC and its REST route (read once from the contract's google.api.http option, so it cannot drift).
  const unaryRoute = routeHint(ChatService.method.createChatCompletion);
  const streamRoute = routeHint(ChatService.method.streamChatCompletion);

  /** Steps shared by both chat RPCs, up to the model. */
  function admit(request: ChatRequestView, ctx: HandlerContext) {
    const { product, caller } = resolveProduct(request.product, ctx);
    const record = ctx.values.get(accessRecordKey);
    if (record) record.model = request.model;
    // An empty model is one the caller left out (proto3 cannot tell them apart): say so, worded as the
    // other malformed-field errors (src/json/explain.ts), not as a model the product does not list.
    if (request.model === "") {
      throw new AppError("invalid_argument", { message: 'Missing required field "model"', param: "model" });
    }
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
  function checkMaxTokens(request: ChatRequestView, product: ProductConfig): number | undefined {
    const cap = Math.min(options.maxTokens, product.maxTokens ?? options.maxTokens);
    checkTokens("max_completion_tokens", request.maxCompletionTokens, cap);
    checkTokens("max_tokens", request.maxTokens, cap);
    return request.maxCompletionTokens === undefined && request.maxTokens === undefined ? cap : undefined;
  }

  function validateMessages(request: ChatRequestView): void {
    if (request.messageCount === 0) {
      throw new AppError("invalid_argument", {
        message: "messages: must contain at least one message",
        param: "messages",
      });
    }
    for (let i = 0; i < request.messageCount; i++) {
      if (request.role(i) === "") {
        throw new AppError("invalid_argument", {
          message: `messages[${i}].role: is required`,
          param: `messages[${i}].role`,
        });
      }
    }
  }

  function callOptions(ctx: HandlerContext, maxTokensCap: number | undefined) {
    const timeoutMs = ctx.timeoutMs();
    return {
      signal: ctx.signal,
      deadlineMs: timeoutMs === undefined ? undefined : Date.now() + timeoutMs,
      maxTokensCap,
      requestId: ctx.values.get(accessRecordKey)?.requestId,
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
    async complete(request, ctx, answer) {
      const { product, caller, provider } = admit(request, ctx);
      if (request.stream === true) {
        throw new AppError("streaming_not_supported", {
          metadata: { hint: streamRoute(request.product) },
          param: "stream",
        });
      }
      const cap = checkMaxTokens(request, product);
      validateMessages(request);
      await options.limiter.admit(product, caller);

      const result = await options.upstream.complete(provider, request.upstreamBody(), callOptions(ctx, cap));
      recordUsage(ctx, result.usage, result.upstreamLatencyMs);
      if (result.usage) {
        const requestId = ctx.values.get(accessRecordKey)?.requestId;
        await options.limiter.charge(product, caller, result.usage.totalTokens, requestId);
      }
      return answer(result.body, provider);
    },

    async *stream(request, ctx, codec) {
      const { product, caller, provider } = admit(request, ctx);
      if (request.stream === false) {
        throw new AppError("streaming_required", {
          metadata: { hint: unaryRoute(request.product) },
          param: "stream",
        });
      }
      const cap = checkMaxTokens(request, product);
      validateMessages(request);
      await options.limiter.admit(product, caller);

      const started = performance.now();
      let first = true;
      let usage: TokenUsage | undefined;
      for await (const chunk of options.upstream.stream(
        provider,
        request.upstreamBody(),
        callOptions(ctx, cap),
      )) {
        if (first) {
          recordUsage(ctx, undefined, performance.now() - started);
          first = false;
        }
        const decoded = codec(chunk, provider);
        if (decoded.usage) usage = decoded.usage;
        yield decoded.value;
      }
      recordUsage(ctx, usage);
      if (usage) {
        const requestId = ctx.values.get(accessRecordKey)?.requestId;
        await options.limiter.charge(product, caller, usage.totalTokens, requestId);
      }
    },

    product(name, ctx) {
      return resolveProduct(name, ctx).product;
    },
  };
}

/**
 * The hint for a call sent to the wrong chat RPC, beside the table's exact message (which callers of the
 * earlier server match on): the RPC to use and its REST route for the product, e.g. `use
 * StreamChatCompletion (REST: POST /v1/chat/product-dev:stream)`.
 */
function routeHint(target: DescMethod): (product: string) => string {
  const pattern = getOption(target, http).pattern;
  if (pattern.case !== "post") return () => `use ${target.name}`;
  const template = pattern.value;
  return (product) => `use ${target.name} (REST: POST ${template.replace("{product}", product)})`;
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
export function notAChatCompletion(provider: ProviderConfig, cause: unknown): AppError {
  return new AppError("upstream_error", {
    cause: new Error(
      `provider ${provider.name} (${provider.kind}) answered JSON that is not a chat completion`,
      { cause },
    ),
  });
}
