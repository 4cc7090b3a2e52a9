import type { HandlerContext } from "@connectrpc/connect";
import type { ChatCore, ChatRequestView } from "../../chat/chat-core.js";
import { AppError } from "../../errors/index.js";
import { checkJsonValues } from "../../lib/message-limits.js";
import { parseJsonBytes } from "../request-body.js";
import type { ProviderConfig } from "../../secrets/types.js";
import { estimatePromptTokens, estimateUtf8Tokens } from "../../usage/estimate.js";
import type {
  JsonObject,
  JsonValue,
  PassthroughRequest,
  SseEvent,
  TokenUsage,
  UpstreamResult,
} from "../../upstream/index.js";
import { UpstreamFailure, isObject } from "../../upstream/index.js";
import { chatUsage, createStreamTranslator, toChatBody, toMessage } from "./translate.js";

/** What the Anthropic surface needs of the forwarder: the native passthrough (src/upstream/forwarder.ts). */
export interface AnthropicUpstream {
  passthrough(
    provider: ProviderConfig,
    request: PassthroughRequest,
    options: { signal: AbortSignal; deadlineMs: number | undefined; requestId: string | undefined },
  ): Promise<UpstreamResult>;
  passthroughStream(
    provider: ProviderConfig,
    request: PassthroughRequest,
    options: { signal: AbortSignal; deadlineMs: number | undefined; requestId: string | undefined },
  ): AsyncIterable<SseEvent>;
}

/** One Messages (or count_tokens) request as the codec decoded it: the bytes and the few keys it read. */
export interface MessagesRequest {
  readonly product: string;
  /** The body exactly as the caller sent it (forwarded unchanged to Anthropic). */
  readonly body: Uint8Array;
  readonly model: string;
  readonly stream: boolean;
  /** Undefined for count_tokens (which has none). */
  readonly maxTokens: number | undefined;
  /** The caller's raw query (`beta=true`), forwarded natively. */
  readonly query: string;
  /** The caller's `anthropic-version` and `anthropic-beta`, forwarded natively. */
  readonly headers: Readonly<Record<string, string>>;
}

/** Response header of `count_tokens` when the count is the server's estimate rather than Anthropic's. */
export const tokenCountHeader = "x-token-count";

/**
 * Most JSON values of a body translated for another provider: it is parsed whole on the event loop (the
 * native path never parses), so it is bounded; larger than the chat surfaces' limit, for coding agents'
 * long sessions (README, "Anthropic Messages API").
 */
export const translatedMaxValues = 200_000;

/** The Messages API calls: native to `anthropic` providers, translated through the chat core otherwise. */
export interface Messages {
  readonly create: (request: MessagesRequest, ctx: HandlerContext) => Promise<string>;
  readonly stream: (request: MessagesRequest, ctx: HandlerContext) => AsyncIterable<string>;
  readonly countTokens: (request: MessagesRequest, ctx: HandlerContext) => Promise<string>;
  /** The product's models as Anthropic's list, or one of them (`id`; 404 when the product has none such). */
  readonly models: (product: string, id: string | undefined, ctx: HandlerContext) => string;
}

export function createMessages(core: ChatCore, upstream: AnthropicUpstream): Messages {
  /** The provider of the request's model, after the product steps; undefined when the product lacks it. */
  function providerOf(request: MessagesRequest, ctx: HandlerContext): ProviderConfig | undefined {
    return core.product(request.product, ctx).models.get(request.model);
  }

  function passthroughOf(request: MessagesRequest, path: string): PassthroughRequest {
    return { path, query: request.query, headers: request.headers, body: request.body, model: request.model };
  }

  function nativeTarget(request: MessagesRequest) {
    return {
      product: request.product,
      model: request.model,
      maxOutputTokens: [{ field: "max_tokens", value: request.maxTokens }],
      // Only when the provider's usage never came (a call cut short): the body's text, extrapolated.
      promptTokens: () => estimateUtf8Tokens(request.body),
    };
  }

  function parsed(request: MessagesRequest): JsonObject {
    checkJsonValues(request.body, translatedMaxValues);
    return parseJsonBytes(request.body) as JsonObject;
  }

  function viewOf(request: MessagesRequest, chat: JsonObject, promptTokens?: () => number): ChatRequestView {
    const messages = chat["messages"] as JsonObject[];
    return {
      ...(promptTokens === undefined ? {} : { promptTokens }),
      product: request.product,
      model: request.model,
      stream: request.stream,
      maxTokens: request.maxTokens,
      maxCompletionTokens: undefined,
      messageCount: messages.length,
      role: (i) => (messages[i]?.["role"] as string | undefined) ?? "",
      upstreamBody: () => chat,
    };
  }

  return {
    async create(request, ctx) {
      const provider = providerOf(request, ctx);
      if (provider?.kind !== "anthropic") {
        const view = viewOf(request, toChatBody(parsed(request), false));
        return core.complete(view, ctx, (answer) => JSON.stringify(toMessage(answer, request.model)));
      }
      const call = await core.admitCall(nativeTarget(request), ctx);
      let usage: TokenUsage | undefined;
      try {
        const result = await upstream.passthrough(
          call.provider,
          passthroughOf(request, "/v1/messages"),
          call.options,
        );
        usage = messageUsage(result.body["usage"]);
        return JSON.stringify(result.body);
      } finally {
        await call.settle(usage);
      }
    },

    async *stream(request, ctx) {
      const provider = providerOf(request, ctx);
      if (provider?.kind !== "anthropic") {
        const chat = toChatBody(parsed(request), true);
        // Anthropic's message_start carries the input count; the translated providers give theirs only at
        // the end, so message_start says the server's estimate and message_delta the provider's count. The
        // core's budget reservation and the charge of a stream cut short use the same count.
        let estimate: number | undefined;
        const promptTokens = () => (estimate ??= estimatePromptTokens(chat));
        const view = viewOf(request, chat, promptTokens);
        const translator = createStreamTranslator(request.model, promptTokens);
        const frames = core.stream(view, ctx, (chunk) => ({
          value: translator.chunk(chunk),
          usage: chatUsage(chunk["usage"]),
        }));
        for await (const text of frames) if (text !== "") yield text;
        yield translator.finish();
        return;
      }
      const call = await core.admitCall(nativeTarget(request), ctx);
      const usage = createUsageReader();
      try {
        for await (const event of upstream.passthroughStream(
          call.provider,
          passthroughOf(request, "/v1/messages"),
          call.options,
        )) {
          // Anthropic's own mid-stream error (overloaded...): ended as the README's 502, its text (which
          // may quote anything) only in the log, scrubbed (UpstreamFailure).
          if (event.event === "error") {
            throw new AppError("upstream_error", {
              cause: new UpstreamFailure(call.provider, `error event mid-stream: ${event.data}`),
            });
          }
          usage.read(event, (text) => call.noteOutput(text));
          yield frameOf(event);
        }
      } finally {
        await call.settle(usage.result());
      }
    },

    async countTokens(request, ctx) {
      const provider = providerOf(request, ctx);
      if (provider === undefined) throw new AppError("model_not_supported", { param: "model" });
      if (provider.kind === "anthropic") {
        const result = await upstream.passthrough(
          provider,
          passthroughOf(request, "/v1/messages/count_tokens"),
          {
            signal: ctx.signal,
            deadlineMs: undefined,
            requestId: undefined,
          },
        );
        ctx.responseHeader.set(tokenCountHeader, "provider");
        return JSON.stringify(result.body);
      }
      const chat = toChatBody(parsed(request), false);
      ctx.responseHeader.set(tokenCountHeader, "estimate");
      return JSON.stringify({ input_tokens: estimatePromptTokens(chat) });
    },

    models(product, id, ctx) {
      const models = [...core.product(product, ctx).models.keys()];
      const entry = (model: string) => ({
        type: "model",
        id: model,
        display_name: model,
        created_at: "1970-01-01T00:00:00Z",
      });
      if (id !== undefined) {
        if (!models.includes(id)) throw new AppError("model_not_found", { param: "model" });
        return JSON.stringify(entry(id));
      }
      return JSON.stringify({
        data: models.map(entry),
        has_more: false,
        first_id: models[0] ?? null,
        last_id: models.at(-1) ?? null,
      });
    },
  };
}

/** An upstream event as the caller gets it: Anthropic's framing, the data as the provider sent it. */
function frameOf(event: SseEvent): string {
  const data = event.data
    .split("\n")
    .map((line) => `data: ${line}`)
    .join("\n");
  return event.event === undefined ? `${data}\n\n` : `event: ${event.event}\n${data}\n\n`;
}

function numberOf(value: JsonValue | undefined): number {
  return typeof value === "number" ? value : 0;
}

/** Anthropic's `usage` (input apart from cache reads and writes) as TokenUsage. */
function messageUsage(usage: JsonValue | undefined): TokenUsage | undefined {
  if (!isObject(usage)) return undefined;
  const cacheWrite = numberOf(usage["cache_creation_input_tokens"]);
  const cacheRead = numberOf(usage["cache_read_input_tokens"]);
  const prompt = numberOf(usage["input_tokens"]) + cacheWrite + cacheRead;
  const completion = numberOf(usage["output_tokens"]);
  return {
    promptTokens: prompt,
    completionTokens: completion,
    totalTokens: prompt + completion,
    ...(cacheRead > 0 ? { cachedInputTokens: cacheRead } : {}),
    ...(cacheWrite > 0 ? { cacheWriteTokens: cacheWrite } : {}),
  };
}

/**
 * Reads usage from a native stream as it passes: `message_start` (input, cache), `message_delta` (output,
 * and input where the API version reports it there); text and tool input noted (`note`) for the core's
 * estimate of a stream cut short. Only the events that carry usage or output are parsed; the others
 * (`ping`) are not.
 */
function createUsageReader() {
  let usage: JsonObject | undefined;
  let finished = false;
  return {
    read(event: SseEvent, note: (text: string) => void): void {
      const type = event.event;
      if (type !== "message_start" && type !== "message_delta" && type !== "content_block_delta") return;
      let data: JsonValue;
      try {
        data = JSON.parse(event.data) as JsonValue;
      } catch {
        return;
      }
      if (!isObject(data)) return;
      if (type === "content_block_delta") {
        const delta = data["delta"];
        if (!isObject(delta)) return;
        const text = typeof delta["text"] === "string" ? delta["text"] : delta["partial_json"];
        if (typeof text === "string") note(text);
        return;
      }
      const reported =
        type === "message_start" && isObject(data["message"]) ? data["message"]["usage"] : data["usage"];
      if (!isObject(reported)) return;
      usage = { ...usage, ...reported };
      if (type === "message_delta") finished = true;
    },
    /**
     * The provider's usage once `message_delta` came; before it, a partial reading (its input counts),
     * which the core completes with the estimate of the noted output (src/chat/chat-core.ts, settle).
     */
    result(): TokenUsage | undefined {
      const read = messageUsage(usage);
      if (read === undefined || finished) return read;
      return { ...read, estimated: true };
    },
  };
}
