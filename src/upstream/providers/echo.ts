import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Clock, JsonObject, JsonValue, ProviderAdapter, UpstreamCall } from "../types.js";

/**
 * The built-in `echo` provider (README, Quick start): no network, no key. It answers with the last user message in an
 * OpenAI-shaped `chat.completion` (or chunks), with usage estimated at about four characters per token, and
 * honours the token limit (`finish_reason: "length"`), `n` and `stream_options.include_usage`. A stream
 * sends one piece (a word with its spaces) per chunk, each after the provider's `stream_delay_ms`.
 */
export function createEchoAdapter(deps: { readonly clock: Clock }): ProviderAdapter {
  const { clock } = deps;

  function answer(call: UpstreamCall) {
    call.signal.throwIfAborted();
    const { body } = call;
    const text = lastUserText(body["messages"]);
    const limit = tokenLimit(body, call.maxTokensCap);
    const truncated = limit !== undefined && estimateTokens(text) > limit;
    const content = truncated ? text.slice(0, limit * charsPerToken) : text;
    const n = typeof body["n"] === "number" && Number.isInteger(body["n"]) && body["n"] > 1 ? body["n"] : 1;
    const promptTokens = estimatePromptTokens(body["messages"]);
    const completionTokens = estimateTokens(content) * n;
    return {
      id: `chatcmpl-echo-${randomUUID().replaceAll("-", "")}`,
      created: Math.floor(clock.now() / 1000),
      model: typeof body["model"] === "string" ? body["model"] : "echo",
      content,
      n,
      finishReason: truncated ? "length" : "stop",
      usage: usageJson(promptTokens, completionTokens),
    };
  }

  return {
    kind: "echo",

    complete(call) {
      return Promise.resolve().then(() => {
        const a = answer(call);
        const body: JsonObject = {
          id: a.id,
          object: "chat.completion",
          created: a.created,
          model: a.model,
          choices: Array.from({ length: a.n }, (_, index) => ({
            index,
            message: { role: "assistant", content: a.content, refusal: null, annotations: [] },
            logprobs: null,
            finish_reason: a.finishReason,
          })),
          usage: a.usage,
          service_tier: "default",
          system_fingerprint: null,
        };
        return {
          body,
          usage: {
            promptTokens: a.usage.prompt_tokens,
            completionTokens: a.usage.completion_tokens,
            totalTokens: a.usage.total_tokens,
          },
          upstreamLatencyMs: 0,
          status: 200,
        };
      });
    },

    async *stream(call) {
      const a = answer(call);
      const options = call.body["stream_options"];
      const includeUsage =
        typeof options === "object" &&
        options !== null &&
        !Array.isArray(options) &&
        options["include_usage"] === true;
      const chunk = (choices: JsonValue[], extra: JsonObject = {}): JsonObject => ({
        id: a.id,
        object: "chat.completion.chunk",
        created: a.created,
        model: a.model,
        service_tier: "default",
        system_fingerprint: null,
        choices,
        ...(includeUsage ? { usage: null } : {}),
        ...extra,
      });
      const choice = (index: number, delta: JsonObject, finishReason: string | null): JsonObject => ({
        index,
        delta,
        logprobs: null,
        finish_reason: finishReason,
      });
      const pieces = a.content.match(/\s*\S+\s*/g) ?? [];
      const delayMs = call.provider.streamDelayMs ?? 0;
      for (let index = 0; index < a.n; index++) {
        yield chunk([choice(index, { role: "assistant", content: "", refusal: null }, null)]);
        for (const piece of pieces) {
          // Between chunks is where a real stream would notice the caller leaving.
          if (delayMs > 0) await sleep(delayMs, undefined, { signal: call.signal }).catch(() => undefined);
          else await Promise.resolve();
          call.signal.throwIfAborted();
          yield chunk([choice(index, { content: piece }, null)]);
        }
        yield chunk([choice(index, {}, a.finishReason)]);
      }
      call.onUsage?.({
        promptTokens: a.usage.prompt_tokens,
        completionTokens: a.usage.completion_tokens,
        totalTokens: a.usage.total_tokens,
      });
      if (includeUsage) yield chunk([], { usage: a.usage });
    },
  };
}

const charsPerToken = 4;

function estimateTokens(text: string): number {
  return Math.ceil(text.length / charsPerToken);
}

/** A rough prompt count: the text of every message plus OpenAI's few tokens of framing per message. */
function estimatePromptTokens(messages: JsonValue | undefined): number {
  if (!Array.isArray(messages)) return 0;
  return messages.reduce<number>((sum, m) => sum + 4 + estimateTokens(textOf(field(m, "content"))), 3);
}

/** The caller's own limit wins; the cap applies only when the caller set none (as for real providers). */
function tokenLimit(body: JsonObject, cap: number | undefined): number | undefined {
  for (const key of ["max_completion_tokens", "max_tokens"]) {
    const value = body[key];
    if (typeof value === "number") return value;
  }
  return cap;
}

function lastUserText(messages: JsonValue | undefined): string {
  if (!Array.isArray(messages)) return "";
  const last = messages.findLast((m) => field(m, "role") === "user");
  return textOf(field(last, "content"));
}

/** String content as is; an array of parts as its text parts joined with newlines. */
function textOf(content: JsonValue | undefined): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .filter((part) => field(part, "type") === "text")
    .map((part) => field(part, "text"))
    .filter((text): text is string => typeof text === "string")
    .join("\n");
}

function field(value: JsonValue | undefined, key: string): JsonValue | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? value[key] : undefined;
}

function usageJson(promptTokens: number, completionTokens: number) {
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}
