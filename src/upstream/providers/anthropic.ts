import type { HttpPost } from "../http.js";
import { perKey } from "../per-key.js";
import type { JsonObject, JsonValue, ProviderAdapter, TokenUsage, UpstreamCall } from "../types.js";
import { withDetails } from "../usage.js";
import type { AdapterDeps } from "./adapter-deps.js";
import {
  assistantToolCalls,
  badAnswer,
  checkMessageFields,
  checkSupported,
  chunkChoice,
  chunkFactory,
  completionChoice,
  completionJson,
  field,
  functionTools,
  imageUrlOf,
  includeUsage,
  invalid,
  isObject,
  maxTokensOf,
  messagesOf,
  misconfigured,
  neutral,
  parseDataUrl,
  parseEventJson,
  partsOf,
  stopList,
  streamFailure,
  stringField,
  textOnly,
  textPartOf,
  translatedFields,
  toolChoiceOf,
  translatedComplete,
  unsupportedPart,
  unsupportedRole,
  usageJson,
  type FieldSupport,
} from "./shared.js";

export const anthropicDefaultBaseUrl = "https://api.anthropic.com";
export const anthropicDefaultVersion = "2023-06-01";
/** Anthropic requires `max_tokens`; used only when neither the caller nor the server gave a cap. */
const fallbackMaxTokens = 4096;
const kind = "anthropic";

/** OpenAI request fields and what this adapter does with them (anything else is a 400 naming it). */
const support: FieldSupport = {
  ...translatedFields,
  parallel_tool_calls: true,
  user: true,
  n: neutral.one,
  logprobs: neutral.no,
  store: neutral.no,
  presence_penalty: neutral.zero,
  frequency_penalty: neutral.zero,
  modalities: neutral.textOnly,
  response_format: (v) => field(v, "type") === "text",
};

/** Anthropic `stop_reason` → OpenAI `finish_reason`. */
const finishReasons: Readonly<Record<string, string>> = {
  end_turn: "stop",
  stop_sequence: "stop",
  pause_turn: "stop",
  max_tokens: "length",
  model_context_window_exceeded: "length",
  tool_use: "tool_calls",
  refusal: "content_filter",
};

/**
 * Anthropic's Messages API (`POST {base_url}/v1/messages`, `x-api-key` and `anthropic-version` headers).
 * System and developer messages become `system`; text and image parts, tools, tool calls and tool results
 * become content blocks; `max_tokens` is always sent. Answers and stream events come back as OpenAI
 * `chat.completion` / `chat.completion.chunk` objects; thinking blocks are not relayed.
 */
export function createAnthropicAdapter(deps: AdapterDeps): ProviderAdapter {
  const { http, clock } = deps;
  const targetOf = perKey((provider, key) => {
    if (key === undefined) throw misconfigured(provider, "api_key is missing");
    const url = new URL(`${(provider.baseUrl ?? anthropicDefaultBaseUrl).replace(/\/+$/, "")}/v1/messages`);
    return {
      origin: url.origin,
      path: url.pathname,
      headers: Object.freeze({
        "x-api-key": key,
        "anthropic-version": provider.apiVersion ?? anthropicDefaultVersion,
      }),
    };
  });

  // The native passthrough (the Anthropic Messages surface): the base URL's origin and path prefix, the key.
  const baseOf = perKey((provider, key) => {
    if (key === undefined) throw misconfigured(provider, "api_key is missing");
    const url = new URL(`${(provider.baseUrl ?? anthropicDefaultBaseUrl).replace(/\/+$/, "")}/`);
    return { origin: url.origin, prefix: url.pathname.replace(/\/+$/, ""), key };
  });

  function post(call: UpstreamCall, stream: boolean): HttpPost {
    const { origin, path, headers } = targetOf(call);
    const body = toAnthropicRequest(call);
    return {
      provider: call.provider,
      origin,
      path,
      headers,
      body: stream ? { ...body, stream: true } : body,
      signal: call.signal,
    };
  }

  const created = () => Math.floor(clock.now() / 1000);

  return {
    kind,

    passthroughTarget(call, request) {
      const { origin, prefix, key } = baseOf(call);
      return {
        origin,
        path: `${prefix}${request.path}${request.query === "" ? "" : `?${request.query}`}`,
        // The caller's anthropic-version wins over the configured one; the key is always the product's.
        headers: {
          "anthropic-version": call.provider.apiVersion ?? anthropicDefaultVersion,
          ...request.headers,
          "x-api-key": key,
        },
      };
    },

    complete(call) {
      return translatedComplete(
        deps,
        post(call, false),
        (answer, at) => fromAnthropicMessage(call, answer, at),
        (answer) => (isObject(answer["usage"]) ? tokenUsageOf(answer["usage"]) : undefined),
      );
    },

    async *stream(call) {
      const wantUsage = includeUsage(call.body);
      let chunk: ReturnType<typeof chunkFactory> | undefined;
      /** The usage so far: `message_start`'s, then each `message_delta`'s counts over it (they are cumulative). */
      let usage: JsonObject = {};
      /** Content block index → OpenAI tool call index. */
      const toolIndex = new Map<number, number>();
      let done = false;
      for await (const event of http.postEventStream(post(call, true))) {
        const data = parseEventJson(call, event.data);
        const type = stringField(data, "type") ?? event.event;
        if (type === "message_start") {
          const message = data["message"];
          chunk = chunkFactory({
            id: stringField(message, "id") ?? "",
            created: created(),
            model: stringField(message, "model") ?? stringField(call.body, "model") ?? "",
          });
          const started = field(message, "usage");
          if (isObject(started)) {
            usage = { ...started };
            // The input counts are final here; the output is not: a stream cut before message_delta is
            // charged these with its output estimated (docs/usage.md).
            call.onUsage?.({ ...tokenUsageOf(usage), estimated: true });
          }
          yield chunk([chunkChoice(0, { role: "assistant", content: "" }, null)]);
          continue;
        }
        if (type === "ping") continue;
        if (type === "error") throw streamFailure(call, `error event: ${JSON.stringify(data["error"])}`);
        if (chunk === undefined)
          throw streamFailure(call, `event ${type ?? "(untyped)"} before message_start`);
        switch (type) {
          case "content_block_start": {
            const block = data["content_block"];
            if (field(block, "type") === "tool_use") {
              const index = toolIndex.size;
              toolIndex.set(numberOr(data["index"], -1), index);
              yield chunk([
                chunkChoice(
                  0,
                  {
                    tool_calls: [
                      {
                        index,
                        id: stringField(block, "id") ?? "",
                        type: "function",
                        function: { name: stringField(block, "name") ?? "", arguments: "" },
                      },
                    ],
                  },
                  null,
                ),
              ]);
            } else if (field(block, "type") === "text" && (stringField(block, "text") ?? "") !== "") {
              yield chunk([chunkChoice(0, { content: stringField(block, "text") ?? "" }, null)]);
            }
            break;
          }
          case "content_block_delta": {
            const delta = data["delta"];
            const deltaType = field(delta, "type");
            if (deltaType === "text_delta") {
              yield chunk([chunkChoice(0, { content: stringField(delta, "text") ?? "" }, null)]);
            } else if (deltaType === "input_json_delta") {
              const index = toolIndex.get(numberOr(data["index"], -1));
              if (index === undefined) throw streamFailure(call, "input_json_delta for an unknown block");
              yield chunk([
                chunkChoice(
                  0,
                  {
                    tool_calls: [
                      { index, function: { arguments: stringField(delta, "partial_json") ?? "" } },
                    ],
                  },
                  null,
                ),
              ]);
            }
            // thinking_delta, signature_delta, citations_delta: not part of the OpenAI answer.
            break;
          }
          case "message_delta": {
            const delta = data["usage"];
            if (isObject(delta)) {
              for (const [name, value] of Object.entries(delta))
                if (typeof value === "number") usage[name] = value;
              // The final counts: charged even if the stream breaks before message_stop.
              call.onUsage?.(tokenUsageOf(usage));
            }
            const reason = stringField(data["delta"], "stop_reason");
            if (reason !== undefined) {
              yield chunk([chunkChoice(0, {}, finishReasons[reason] ?? "stop")]);
            }
            break;
          }
          case "message_stop":
            done = true;
            break;
          default:
            // content_block_stop, and event types added later (Anthropic's versioning policy says to
            // ignore unknown ones).
            break;
        }
        if (done) break;
      }
      if (!done || chunk === undefined) throw streamFailure(call, "event stream ended before message_stop");
      if (wantUsage) {
        const input = inputTokens(usage);
        yield chunk([], {
          usage: usageJson({
            prompt: input.prompt,
            completion: numberOr(usage["output_tokens"], 0),
            cached: input.cached,
          }),
        });
      }
    },
  };
}

function numberOr<T extends number | undefined>(value: JsonValue | undefined, fallback: T): number | T {
  return typeof value === "number" ? value : fallback;
}

/**
 * Anthropic counts cached input apart from `input_tokens`; OpenAI's `prompt_tokens` includes it and names
 * the cache reads `cached_tokens`.
 */
function inputTokens(usage: JsonValue | undefined): { prompt: number; cached: number | undefined } {
  const created = field(usage, "cache_creation_input_tokens");
  const read = field(usage, "cache_read_input_tokens");
  const cacheReported = typeof created === "number" || typeof read === "number";
  return {
    prompt: numberOr(field(usage, "input_tokens"), 0) + numberOr(created, 0) + numberOr(read, 0),
    cached: cacheReported ? numberOr(read, 0) : undefined,
  };
}

/** Anthropic's usage as TokenUsage: the prompt includes cache reads and writes, as OpenAI's does. */
function tokenUsageOf(usage: JsonObject): TokenUsage {
  const input = inputTokens(usage);
  const completion = numberOr(usage["output_tokens"], 0);
  return withDetails(
    { promptTokens: input.prompt, completionTokens: completion, totalTokens: input.prompt + completion },
    {
      cachedInputTokens: input.cached,
      cacheWriteTokens: numberOr(usage["cache_creation_input_tokens"], undefined),
    },
  );
}

function fromAnthropicMessage(call: UpstreamCall, body: JsonObject, created: number): JsonObject {
  const content = body["content"];
  if (body["type"] !== "message" || !Array.isArray(content)) {
    throw badAnswer(call, "expected a message with a content array");
  }
  let text: string | null = null;
  const toolCalls: JsonObject[] = [];
  for (const block of content) {
    if (field(block, "type") === "text") {
      text = (text ?? "") + (stringField(block, "text") ?? "");
    } else if (field(block, "type") === "tool_use") {
      toolCalls.push({
        id: stringField(block, "id") ?? "",
        type: "function",
        function: {
          name: stringField(block, "name") ?? "",
          arguments: JSON.stringify(field(block, "input") ?? {}),
        },
      });
    }
  }
  const reason = stringField(body, "stop_reason");
  const usage = body["usage"];
  const input = inputTokens(usage);
  return completionJson({
    id: stringField(body, "id") ?? "",
    created,
    model: stringField(body, "model") ?? stringField(call.body, "model") ?? "",
    choices: [completionChoice(0, text, toolCalls, (reason && finishReasons[reason]) ?? "stop")],
    usage: isObject(usage)
      ? usageJson({
          prompt: input.prompt,
          completion: numberOr(usage["output_tokens"], 0),
          cached: input.cached,
        })
      : undefined,
  });
}

/** The OpenAI request as a Messages API request; 400 naming the field for what Anthropic cannot do. */
function toAnthropicRequest(call: UpstreamCall): JsonObject {
  const { body } = call;
  checkSupported(body, kind, support);
  const system: string[] = [];
  const messages: JsonObject[] = [];
  for (const { message, role, path } of messagesOf(body)) {
    checkMessageFields(message, path, kind);
    const contentPath = `${path}.content`;
    switch (role) {
      case "system":
      case "developer":
        system.push(textOnly(message["content"], contentPath, kind));
        break;
      case "user":
        messages.push({
          role: "user",
          content:
            typeof message["content"] === "string"
              ? message["content"]
              : partsOf(message["content"], contentPath).map(({ part, path: p }) => userBlock(part, p)),
        });
        break;
      case "assistant": {
        const blocks: JsonObject[] = [];
        const text = textOnly(message["content"], contentPath, kind);
        if (text !== "") blocks.push({ type: "text", text });
        for (const toolCall of assistantToolCalls(message, path, kind)) {
          blocks.push({ type: "tool_use", id: toolCall.id ?? "", name: toolCall.name, input: toolCall.args });
        }
        if (blocks.length === 0)
          throw invalid(contentPath, "an assistant message needs content or tool_calls");
        messages.push({ role: "assistant", content: blocks });
        break;
      }
      case "tool": {
        const id = message["tool_call_id"];
        if (typeof id !== "string") throw invalid(`${path}.tool_call_id`, "is required on a tool message");
        const result: JsonObject = {
          type: "tool_result",
          tool_use_id: id,
          content: textOnly(message["content"], contentPath, kind),
        };
        // Results of one turn's tool calls travel together in one user message.
        const last = messages.at(-1);
        const lastContent = last?.["content"];
        if (
          last?.["role"] === "user" &&
          Array.isArray(lastContent) &&
          field(lastContent.at(-1), "type") === "tool_result"
        ) {
          lastContent.push(result);
        } else {
          messages.push({ role: "user", content: [result] });
        }
        break;
      }
      default:
        throw unsupportedRole(role, path, kind);
    }
  }

  const request: JsonObject = {
    model: body["model"] ?? "",
    max_tokens: maxTokensOf(call) ?? fallbackMaxTokens,
    ...(system.length > 0 ? { system: system.join("\n\n") } : {}),
    messages,
  };
  for (const name of ["temperature", "top_p"] as const) {
    if (typeof body[name] === "number") request[name] = body[name];
  }
  const stop = stopList(body["stop"]);
  if (stop !== undefined) request["stop_sequences"] = stop;
  const tools = toolsOf(body["tools"]);
  if (tools !== undefined) request["tools"] = tools;
  const choice = anthropicToolChoice(body["tool_choice"], body["parallel_tool_calls"]);
  if (choice !== undefined) request["tool_choice"] = choice;
  if (typeof body["user"] === "string") request["metadata"] = { user_id: body["user"] };
  return request;
}

function userBlock(part: JsonObject, path: string): JsonObject {
  switch (part["type"]) {
    case "text":
      return { type: "text", text: textPartOf(part, path) };
    case "image_url": {
      const url = imageUrlOf(part, path);
      const data = parseDataUrl(url);
      if (data !== undefined) {
        return { type: "image", source: { type: "base64", media_type: data.mediaType, data: data.data } };
      }
      if (!/^https?:\/\//.test(url))
        throw invalid(`${path}.image_url.url`, "must be an https:// or data: URL");
      return { type: "image", source: { type: "url", url } };
    }
    default:
      throw unsupportedPart(part, path, kind);
  }
}

function toolsOf(tools: JsonValue | undefined): JsonObject[] | undefined {
  const declared = functionTools(tools, kind);
  if (declared.length === 0) return undefined;
  return declared.map(({ name, description, parameters }) => ({
    name,
    ...(description === undefined ? {} : { description }),
    input_schema: parameters ?? { type: "object", properties: {} },
  }));
}

/** Anthropic's `tool_choice`; `parallel_tool_calls: false` rides on it as `disable_parallel_tool_use`. */
function anthropicToolChoice(
  choice: JsonValue | undefined,
  parallel: JsonValue | undefined,
): JsonObject | undefined {
  const wanted = toolChoiceOf(choice);
  if (wanted?.mode === "none") return { type: "none" };
  const result: JsonObject | undefined =
    wanted === undefined
      ? undefined
      : wanted.mode === "function"
        ? { type: "tool", name: wanted.name }
        : { type: wanted.mode === "required" ? "any" : "auto" };
  if (parallel === false) return { ...(result ?? { type: "auto" }), disable_parallel_tool_use: true };
  return result;
}
