import { getOption, type DescMethod } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { ChatService } from "../../gen/apikeyserver/v1/chat_pb.js";
import { http } from "../../gen/google/api/annotations_pb.js";
import { assertCanUseProduct, type Principal } from "../auth/index.js";
import { AppError } from "../errors/index.js";
import type { CallGate } from "../limits/index.js";
import type { ProductConfig, ProviderConfig } from "../secrets/types.js";
import { positiveInt } from "../lib/options.js";
import { accessRecordKey, holdAccessRecord } from "../edge/access-record.js";
import { costNanoUsd, toUsd } from "../usage/cost.js";
import { estimatePromptTokens, estimateTextTokens } from "../usage/estimate.js";
import type { ChatUpstream, JsonObject, SecretsView, TokenUsage, UpstreamCallOptions } from "./ports.js";

export interface ChatCoreOptions {
  readonly secrets: SecretsView;
  /** Reads the authenticated caller from the call's context (set by the auth interceptor). */
  readonly caller: (ctx: HandlerContext) => Principal | undefined;
  readonly upstream: ChatUpstream;
  /** Rate limits and budgets: one admission before the upstream, one settlement after (src/limits/call-gate.ts). */
  readonly gate: CallGate;
  /** Sees the cost of every priced call (metrics: api_key_server_cost_usd_total). Must not throw. */
  readonly onCost?: ((product: string, model: string, usd: number) => void) | undefined;
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
  /**
   * The caller's name of the field `maxCompletionTokens` came from, which a refusal names (default
   * `max_completion_tokens`; the Responses API's is `max_output_tokens`).
   */
  readonly maxCompletionTokensField?: string;
  readonly messageCount: number;
  /** The role of message `i`, "" when it has none. */
  role(i: number): string;
  /** The OpenAI body for the provider, without `product`; throws AppError `invalid_argument` when it cannot be built. */
  upstreamBody(): JsonObject;
  /**
   * The prompt's token estimate, where the surface needs it too (the Anthropic surface's message_start):
   * one count for both. Default: estimatePromptTokens over `upstreamBody()`.
   */
  readonly promptTokens?: () => number;
}

/** The provider's unary answer in the caller's form; throws AppError `upstream_error` when it is no chat completion. */
export type AnswerCodec<T> = (body: JsonObject, provider: ProviderConfig) => T;

/** One provider chunk in the caller's form, and its usage; throws like AnswerCodec. */
export type ChunkCodec<T> = (
  chunk: JsonObject,
  provider: ProviderConfig,
) => { readonly value: T; readonly usage: TokenUsage | undefined };

/**
 * What the per-call steps need to know of any call that spends provider tokens, whatever its surface
 * (chat, embeddings, the Responses or Anthropic Messages API): the product, the model, the output caps the
 * caller asked for, and the prompt's token estimate (computed only when needed).
 */
export interface CallTarget {
  readonly product: string;
  readonly model: string;
  /**
   * The caller's output caps by wire field name (`max_tokens`, `max_output_tokens`…); undefined: not sent.
   * Empty for a call that produces no output tokens (embeddings): no cap is checked, sent or reserved.
   */
  readonly maxOutputTokens: ReadonlyArray<{ readonly field: string; readonly value: number | undefined }>;
  /** The prompt's estimated tokens (src/usage/estimate.ts); called at most once per call. */
  promptTokens(): number;
}

/**
 * A call admitted by the per-call steps: the product may be used by the caller, the model is one of its,
 * the limits let it through. The surface forwards with `options` and must `settle` exactly once when the
 * call ends, however it ends (a `finally`): that is where usage is recorded and charged.
 */
export interface AdmittedCall {
  readonly product: ProductConfig;
  readonly caller: Principal;
  readonly provider: ProviderConfig;
  /** For the upstream: cancellation, deadline, and the output cap to send when the caller asked none. */
  readonly options: UpstreamCallOptions & { readonly requestId: string | undefined };
  /** Output text the caller has been sent so far: the estimate of a call that ends without provider usage. */
  noteOutput(text: string): void;
  /**
   * Records and charges the call's usage: the provider's (as the adapter told `options.onUsage`, else as
   * given), otherwise an estimate (prompt estimate plus the noted output), marked `estimated`. Idempotent;
   * never throws.
   */
  settle(usage: TokenUsage | undefined): Promise<void>;
}

/** The product, the caller and the provider of the model, after the product and model steps. */
export interface ResolvedModel {
  readonly product: ProductConfig;
  readonly caller: Principal;
  readonly provider: ProviderConfig;
}

/** The chat steps, once, for every protocol. */
export interface ChatCore {
  /**
   * The per-call steps every surface runs before going upstream (src/chat/chat-core.ts is the one
   * enforcement point of products, models, output caps, limits and usage). `resolved`: the product and model
   * steps a surface already ran with `model` for this call (they are not run twice).
   */
  admitCall(target: CallTarget, ctx: HandlerContext, resolved?: ResolvedModel): Promise<AdmittedCall>;
  /** The product and model steps alone (the product exists, the caller may use it, it lists the model). */
  model(product: string, model: string, ctx: HandlerContext): ResolvedModel;
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

  /** The product, the caller and the model's provider; fills the access record's product, caller and model. */
  function resolveModel(productName: string, model: string, ctx: HandlerContext): ResolvedModel {
    const { product, caller } = resolveProduct(productName, ctx);
    const record = ctx.values.get(accessRecordKey);
    if (record) record.model = model;
    // An empty model is one the caller left out (proto3 cannot tell them apart): say so, worded as the
    // other malformed-field errors (src/json/explain.ts), not as a model the product does not list.
    if (model === "") {
      throw new AppError("invalid_argument", { message: 'Missing required field "model"', param: "model" });
    }
    const provider = product.models.get(model);
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

  /** The cap for this call; throws when the caller asked for more. Returns the cap to send when it asked nothing. */
  function checkMaxTokens(target: CallTarget, product: ProductConfig): number | undefined {
    // A call without output tokens (embeddings) has no cap to check or send, and reserves no output.
    if (target.maxOutputTokens.length === 0) return undefined;
    const cap = Math.min(options.maxTokens, product.maxTokens ?? options.maxTokens);
    let asked = false;
    for (const { field, value } of target.maxOutputTokens) {
      checkTokens(field, value, cap);
      if (value !== undefined) asked = true;
    }
    return asked ? undefined : cap;
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

  function recordUsage(ctx: HandlerContext, usage: TokenUsage, costUsd: number | undefined): void {
    const record = ctx.values.get(accessRecordKey);
    if (!record) return;
    record.promptTokens = usage.promptTokens;
    record.completionTokens = usage.completionTokens;
    record.totalTokens = usage.totalTokens;
    if (usage.cachedInputTokens !== undefined) record.cachedInputTokens = usage.cachedInputTokens;
    if (usage.cacheWriteTokens !== undefined) record.cacheWriteTokens = usage.cacheWriteTokens;
    if (usage.reasoningTokens !== undefined) record.reasoningTokens = usage.reasoningTokens;
    if (usage.audioInputTokens !== undefined) record.audioInputTokens = usage.audioInputTokens;
    if (usage.audioOutputTokens !== undefined) record.audioOutputTokens = usage.audioOutputTokens;
    if (usage.estimated === true) record.usageEstimated = true;
    if (costUsd !== undefined) record.costUsd = costUsd;
  }

  /** The steps after the model: output caps, limits; then the handle the surface settles when the call ends. */
  async function admitResolved(
    target: CallTarget,
    ctx: HandlerContext,
    resolved: ResolvedModel,
  ): Promise<AdmittedCall> {
    const { product, caller, provider } = resolved;
    const maxTokensCap = checkMaxTokens(target, product);
    // The worst case the budgets reserve: the largest output cap asked for, else the one sent upstream.
    let maxOutput = 0;
    for (const { value } of target.maxOutputTokens)
      if (value !== undefined) maxOutput = Math.max(maxOutput, value);
    // CallTarget.promptTokens runs at most once per call: the reservation and the estimate share it.
    let promptEstimate: number | undefined;
    const promptTokens = () => (promptEstimate ??= target.promptTokens());
    const ticket = await options.gate.admit({
      product,
      caller,
      model: target.model,
      promptTokens,
      maxOutputTokens: maxTokensCap ?? maxOutput,
    });
    const timeoutMs = ctx.timeoutMs();
    const record = ctx.values.get(accessRecordKey);
    const requestId = record?.requestId;
    // The access line of a call cut short waits for its usage (src/edge/access-record.ts).
    const release = record === undefined ? undefined : holdAccessRecord(record);
    let output = "";
    let settled = false;
    /** The provider's usage as the adapter read it (also from a stream that does not relay it). */
    let observed: TokenUsage | undefined;
    return {
      product,
      caller,
      provider,
      options: {
        signal: ctx.signal,
        deadlineMs: timeoutMs === undefined ? undefined : Date.now() + timeoutMs,
        maxTokensCap,
        requestId,
        onUsage: (usage) => {
          observed = usage;
        },
      },
      noteOutput(text) {
        output += text;
      },
      async settle(reported) {
        if (settled) return;
        settled = true;
        // The adapter's reading has the provider's breakdown; the surface's is what it decoded of the answer.
        let usage = observed ?? reported;
        if (usage?.estimated === true) {
          // A partial reading (docs/usage.md): the provider's input counts, the output estimated from the
          // text sent, never below what the provider had counted.
          const completion = Math.max(usage.completionTokens, estimateTextTokens(output));
          usage = { ...usage, completionTokens: completion, totalTokens: usage.promptTokens + completion };
        } else if (!usage) {
          let prompt = 0;
          try {
            prompt = promptTokens();
          } catch {
            // An estimate is best effort: a prompt it cannot read counts nothing rather than fail the call.
          }
          const completion = estimateTextTokens(output);
          usage = {
            promptTokens: prompt,
            completionTokens: completion,
            totalTokens: prompt + completion,
            estimated: true,
          };
        }
        const price = product.prices?.get(target.model);
        const nanoUsd = price === undefined ? undefined : costNanoUsd(price, usage);
        recordUsage(ctx, usage, nanoUsd === undefined ? undefined : toUsd(nanoUsd));
        release?.();
        if (nanoUsd !== undefined) options.onCost?.(product.name, target.model, toUsd(nanoUsd));
        await ticket.settle(usage.totalTokens, nanoUsd ?? 0, requestId);
      },
    };
  }

  function chatTarget(request: ChatRequestView): CallTarget {
    return {
      product: request.product,
      model: request.model,
      maxOutputTokens: [
        {
          field: request.maxCompletionTokensField ?? "max_completion_tokens",
          value: request.maxCompletionTokens,
        },
        { field: "max_tokens", value: request.maxTokens },
      ],
      promptTokens: request.promptTokens ?? (() => estimatePromptTokens(request.upstreamBody())),
    };
  }

  return {
    admitCall(target, ctx, resolved) {
      return admitResolved(target, ctx, resolved ?? resolveModel(target.product, target.model, ctx));
    },

    model: resolveModel,

    async complete(request, ctx, answer) {
      const resolved = resolveModel(request.product, request.model, ctx);
      if (request.stream === true) {
        throw new AppError("streaming_not_supported", {
          metadata: { hint: streamRoute(request.product) },
          param: "stream",
        });
      }
      const target = chatTarget(request);
      checkMaxTokens(target, resolved.product);
      validateMessages(request);
      const call = await admitResolved(target, ctx, resolved);
      let usage: TokenUsage | undefined;
      try {
        const result = await options.upstream.complete(call.provider, request.upstreamBody(), call.options);
        const record = ctx.values.get(accessRecordKey);
        if (record) record.upstreamLatencyMs = result.upstreamLatencyMs;
        usage = result.usage;
        return answer(result.body, call.provider);
      } finally {
        await call.settle(usage);
      }
    },

    async *stream(request, ctx, codec) {
      const resolved = resolveModel(request.product, request.model, ctx);
      if (request.stream === false) {
        throw new AppError("streaming_required", {
          metadata: { hint: unaryRoute(request.product) },
          param: "stream",
        });
      }
      const target = chatTarget(request);
      checkMaxTokens(target, resolved.product);
      validateMessages(request);
      const call = await admitResolved(target, ctx, resolved);

      const started = performance.now();
      let first = true;
      let usage: TokenUsage | undefined;
      try {
        for await (const chunk of options.upstream.stream(
          call.provider,
          request.upstreamBody(),
          call.options,
        )) {
          if (first) {
            const record = ctx.values.get(accessRecordKey);
            if (record) record.upstreamLatencyMs = performance.now() - started;
            first = false;
          }
          const decoded = codec(chunk, call.provider);
          if (decoded.usage) usage = decoded.usage;
          else noteChunkText(call, chunk);
          yield decoded.value;
        }
      } finally {
        await call.settle(usage);
      }
    },

    product(name, ctx) {
      return resolveProduct(name, ctx).product;
    },
  };
}

/** The text of an OpenAI chunk's first choice (content, refusal, tool-call arguments), for the output estimate. */
function noteChunkText(call: AdmittedCall, chunk: JsonObject): void {
  const choices = chunk["choices"];
  if (!Array.isArray(choices)) return;
  for (const choice of choices) {
    if (typeof choice !== "object" || choice === null || Array.isArray(choice)) continue;
    const delta = choice["delta"];
    if (typeof delta !== "object" || delta === null || Array.isArray(delta)) continue;
    const content = delta["content"];
    if (typeof content === "string") call.noteOutput(content);
    const refusal = delta["refusal"];
    if (typeof refusal === "string") call.noteOutput(refusal);
    const calls = delta["tool_calls"];
    if (Array.isArray(calls)) {
      for (const c of calls) {
        if (typeof c !== "object" || c === null || Array.isArray(c)) continue;
        const fn = c["function"];
        if (typeof fn !== "object" || fn === null || Array.isArray(fn)) continue;
        const args = fn["arguments"];
        if (typeof args === "string") call.noteOutput(args);
      }
    }
  }
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
