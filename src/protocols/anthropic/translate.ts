import { AppError } from "../../errors/index.js";
import { isObject, type JsonObject, type JsonValue, type TokenUsage } from "../../upstream/index.js";

// Anthropic Messages ↔ OpenAI chat, for the providers that do not speak Messages (README, "Anthropic
// Messages API", the translation rules). The chat core takes the OpenAI body; the provider's OpenAI answer
// comes back as a Message or as Anthropic's event sequence.

function invalid(param: string, what: string): AppError {
  return new AppError("invalid_argument", { message: `${param}: ${what}`, param });
}

/** The text of a `system` value or of a block list (text blocks joined; other blocks have no text). */
function textOf(value: JsonValue | undefined, param: string): string {
  if (typeof value === "string") return value;
  if (value === undefined || value === null) return "";
  if (!Array.isArray(value)) throw invalid(param, "must be a string or a list of content blocks");
  const texts: string[] = [];
  for (const block of value) {
    if (isObject(block) && block["type"] === "text" && typeof block["text"] === "string") {
      texts.push(block["text"]);
    }
  }
  return texts.join("\n");
}

/** Block types that carry nothing another provider can take, dropped (README's rules). */
const droppedBlocks: ReadonlySet<string> = new Set([
  "thinking",
  "redacted_thinking",
  "server_tool_use",
  "web_search_tool_result",
  "web_fetch_tool_result",
  "code_execution_tool_result",
  "mcp_tool_use",
  "mcp_tool_result",
  "container_upload",
]);

function imagePart(block: JsonObject, param: string): JsonObject {
  const source = block["source"];
  if (!isObject(source)) throw invalid(`${param}.source`, "is required");
  if (source["type"] === "base64") {
    const media = source["media_type"];
    const data = source["data"];
    if (typeof media !== "string" || typeof data !== "string") {
      throw invalid(`${param}.source`, "needs media_type and data");
    }
    return { type: "image_url", image_url: { url: `data:${media};base64,${data}` } };
  }
  if (source["type"] === "url" && typeof source["url"] === "string") {
    return { type: "image_url", image_url: { url: source["url"] } };
  }
  throw invalid(`${param}.source.type`, "only base64 and url images can be sent to this provider");
}

/** One Messages message as OpenAI messages (a user turn's tool results become `tool` messages first). */
function messagesOf(message: JsonValue, param: string, out: JsonObject[]): void {
  if (!isObject(message)) throw invalid(param, "must be an object");
  const role = message["role"];
  const content = message["content"];
  if (role === "system") {
    out.push({ role: "system", content: textOf(content, `${param}.content`) });
    return;
  }
  if (role !== "user" && role !== "assistant") {
    throw invalid(`${param}.role`, 'must be "user" or "assistant"');
  }
  if (typeof content === "string") {
    out.push({ role, content });
    return;
  }
  if (!Array.isArray(content))
    throw invalid(`${param}.content`, "must be a string or a list of content blocks");
  const parts: JsonObject[] = [];
  const texts: string[] = [];
  const toolCalls: JsonObject[] = [];
  content.forEach((block, j) => {
    const at = `${param}.content[${j}]`;
    if (!isObject(block)) throw invalid(at, "must be an object");
    const type = block["type"];
    if (typeof type === "string" && droppedBlocks.has(type)) return;
    if (type === "text") {
      const text = typeof block["text"] === "string" ? block["text"] : "";
      if (role === "user") parts.push({ type: "text", text });
      else texts.push(text);
    } else if (type === "image" && role === "user") {
      parts.push(imagePart(block, at));
    } else if (type === "tool_result" && role === "user") {
      const id = block["tool_use_id"];
      if (typeof id !== "string") throw invalid(`${at}.tool_use_id`, "is required");
      out.push({ role: "tool", tool_call_id: id, content: textOf(block["content"], `${at}.content`) });
    } else if (type === "tool_use" && role === "assistant") {
      const name = block["name"];
      const id = block["id"];
      if (typeof name !== "string" || typeof id !== "string") throw invalid(at, "needs id and name");
      toolCalls.push({
        id,
        type: "function",
        function: { name, arguments: JSON.stringify(block["input"] ?? {}) },
      });
    } else {
      throw invalid(
        `${at}.type`,
        `${JSON.stringify(type) ?? "a block without type"} cannot be sent to this provider`,
      );
    }
  });
  if (role === "user") {
    if (parts.length > 0) out.push({ role: "user", content: parts });
    return;
  }
  if (texts.length === 0 && toolCalls.length === 0) return;
  out.push({
    role: "assistant",
    content: texts.length === 0 ? null : texts.join(""),
    ...(toolCalls.length === 0 ? {} : { tool_calls: toolCalls }),
  });
}

/** Custom tools as OpenAI functions; Anthropic's server tools (a `type` other than `custom`) are dropped. */
function toolsOf(tools: JsonValue | undefined): JsonObject[] | undefined {
  if (tools === undefined || tools === null) return undefined;
  if (!Array.isArray(tools)) throw invalid("tools", "must be a list");
  const out: JsonObject[] = [];
  tools.forEach((tool, i) => {
    if (!isObject(tool)) throw invalid(`tools[${i}]`, "must be an object");
    const type = tool["type"];
    if (type !== undefined && type !== null && type !== "custom") return;
    const name = tool["name"];
    if (typeof name !== "string") throw invalid(`tools[${i}].name`, "is required");
    const description = tool["description"];
    out.push({
      type: "function",
      function: {
        name,
        ...(typeof description === "string" ? { description } : {}),
        parameters: tool["input_schema"] ?? { type: "object", properties: {} },
      },
    });
  });
  return out.length === 0 ? undefined : out;
}

function toolChoiceOf(choice: JsonValue | undefined): JsonValue | undefined {
  if (!isObject(choice)) return undefined;
  switch (choice["type"]) {
    case "auto":
      return "auto";
    case "any":
      return "required";
    case "none":
      return "none";
    case "tool":
      return typeof choice["name"] === "string"
        ? { type: "function", function: { name: choice["name"] } }
        : undefined;
    default:
      throw invalid("tool_choice.type", "must be auto, any, tool or none");
  }
}

/**
 * The OpenAI chat body of a Messages request. Translated: `system` (a string or text blocks) and
 * `role: "system"` messages as system messages; text and image blocks; `tool_use` as `tool_calls` and
 * `tool_result` as `tool` messages; custom `tools`, `tool_choice` (`disable_parallel_tool_use` as
 * `parallel_tool_calls: false`); `max_tokens`, `stop_sequences`, `temperature`, `top_p`,
 * `metadata.user_id` as `user`; `stream` (with usage asked for). Dropped: `thinking` and thinking blocks,
 * `cache_control`, server tools and their blocks, `top_k`, and any other top-level field. Refused (400
 * naming the field): a block no provider of this kind can take (a document, a tool result outside a user
 * turn).
 */
export function toChatBody(body: JsonObject, stream: boolean): JsonObject {
  const messages: JsonObject[] = [];
  const system = body["system"];
  if (system !== undefined && system !== null) {
    const text = textOf(system, "system");
    if (text !== "") messages.push({ role: "system", content: text });
  }
  const list = body["messages"];
  if (!Array.isArray(list)) throw invalid("messages", "must be a list");
  list.forEach((message, i) => messagesOf(message, `messages[${i}]`, messages));
  const chat: JsonObject = { model: body["model"] ?? "", messages };
  if (typeof body["max_tokens"] === "number") chat["max_tokens"] = body["max_tokens"];
  for (const name of ["temperature", "top_p"] as const) {
    if (typeof body[name] === "number") chat[name] = body[name];
  }
  const stop = body["stop_sequences"];
  if (Array.isArray(stop) && stop.length > 0) chat["stop"] = stop;
  const tools = toolsOf(body["tools"]);
  if (tools !== undefined) {
    chat["tools"] = tools;
    const choice = toolChoiceOf(body["tool_choice"]);
    if (choice !== undefined) chat["tool_choice"] = choice;
    const toolChoice = body["tool_choice"];
    if (isObject(toolChoice) && toolChoice["disable_parallel_tool_use"] === true) {
      chat["parallel_tool_calls"] = false;
    }
  }
  const metadata = body["metadata"];
  if (isObject(metadata) && typeof metadata["user_id"] === "string") chat["user"] = metadata["user_id"];
  if (stream) {
    chat["stream"] = true;
    chat["stream_options"] = { include_usage: true };
  }
  return chat;
}

/** OpenAI `finish_reason` → Anthropic `stop_reason`. */
const stopReasons: Readonly<Record<string, string>> = {
  stop: "end_turn",
  length: "max_tokens",
  tool_calls: "tool_use",
  function_call: "tool_use",
  content_filter: "refusal",
};

function numberOf(value: JsonValue | undefined): number {
  return typeof value === "number" ? value : 0;
}

/** OpenAI `usage` as Anthropic's (input without the cache reads, which Anthropic counts apart). */
function anthropicUsage(usage: JsonValue | undefined): JsonObject {
  if (!isObject(usage)) return { input_tokens: 0, output_tokens: 0 };
  const details = usage["prompt_tokens_details"];
  const cached = isObject(details) ? numberOf(details["cached_tokens"]) : 0;
  return {
    input_tokens: Math.max(0, numberOf(usage["prompt_tokens"]) - cached),
    output_tokens: numberOf(usage["completion_tokens"]),
    ...(cached > 0 ? { cache_read_input_tokens: cached } : {}),
  };
}

/** TokenUsage from an OpenAI `usage` object, or undefined when there is none. */
export function chatUsage(usage: JsonValue | undefined): TokenUsage | undefined {
  if (!isObject(usage)) return undefined;
  const prompt = numberOf(usage["prompt_tokens"]);
  const completion = numberOf(usage["completion_tokens"]);
  return { promptTokens: prompt, completionTokens: completion, totalTokens: prompt + completion };
}

function messageId(id: JsonValue | undefined): string {
  const text = typeof id === "string" && id !== "" ? id : `${Date.now()}`;
  return text.startsWith("msg_") ? text : `msg_${text}`;
}

function toolInput(args: JsonValue | undefined): JsonValue {
  if (typeof args !== "string" || args === "") return {};
  try {
    return JSON.parse(args) as JsonValue;
  } catch {
    return { arguments: args };
  }
}

/** A provider's OpenAI chat completion as a Messages answer. */
export function toMessage(answer: JsonObject, model: string): JsonObject {
  const choices = answer["choices"];
  const choice = Array.isArray(choices) ? choices[0] : undefined;
  const message = isObject(choice) ? choice["message"] : undefined;
  const content: JsonObject[] = [];
  if (isObject(message)) {
    if (typeof message["content"] === "string" && message["content"] !== "") {
      content.push({ type: "text", text: message["content"] });
    }
    const calls = message["tool_calls"];
    if (Array.isArray(calls)) {
      for (const call of calls) {
        if (!isObject(call) || !isObject(call["function"])) continue;
        const fn = call["function"];
        content.push({
          type: "tool_use",
          id: typeof call["id"] === "string" ? call["id"] : "",
          name: typeof fn["name"] === "string" ? fn["name"] : "",
          input: toolInput(fn["arguments"]),
        });
      }
    }
  }
  const finish = isObject(choice) ? choice["finish_reason"] : undefined;
  return {
    id: messageId(answer["id"]),
    type: "message",
    role: "assistant",
    model,
    content,
    stop_reason: typeof finish === "string" ? (stopReasons[finish] ?? "end_turn") : "end_turn",
    stop_sequence: null,
    usage: anthropicUsage(answer["usage"]),
  };
}

/** One Server-Sent Event as Anthropic frames them. */
export function sseFrame(type: string, data: JsonObject): string {
  return `event: ${type}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * Turns a provider's OpenAI chunks into Anthropic's event sequence: `message_start` (and a `ping`) on the
 * first chunk, a `content_block_start` / `_delta` (`text_delta`, `input_json_delta`) / `_stop` per text
 * run and per tool call, then on `finish()` `message_delta` with the stop reason and usage, and
 * `message_stop`. One per stream.
 */
export interface StreamTranslator {
  /** The frames for one OpenAI chunk ("" when it carries nothing to relay). */
  chunk(chunk: JsonObject): string;
  /** The closing frames, once the provider's stream ended well. */
  finish(): string;
}

export function createStreamTranslator(model: string, inputTokens?: () => number): StreamTranslator {
  let started = false;
  let index = -1;
  let open: "text" | "tool" | undefined;
  let stopReason = "end_turn";
  let usage: JsonValue | undefined;

  function start(id: JsonValue | undefined): string {
    started = true;
    return (
      sseFrame("message_start", {
        type: "message_start",
        message: {
          id: messageId(id),
          type: "message",
          role: "assistant",
          model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: inputTokens?.() ?? 0, output_tokens: 0 },
        },
      }) + sseFrame("ping", { type: "ping" })
    );
  }

  function close(): string {
    if (open === undefined) return "";
    open = undefined;
    return sseFrame("content_block_stop", { type: "content_block_stop", index });
  }

  function openBlock(kind: "text" | "tool", block: JsonObject): string {
    const closed = close();
    index++;
    open = kind;
    return (
      closed + sseFrame("content_block_start", { type: "content_block_start", index, content_block: block })
    );
  }

  return {
    chunk(chunk) {
      let out = started ? "" : start(chunk["id"]);
      if (chunk["usage"] !== undefined && chunk["usage"] !== null) usage = chunk["usage"];
      const choices = chunk["choices"];
      const choice = Array.isArray(choices) ? choices[0] : undefined;
      if (!isObject(choice)) return out;
      const delta = choice["delta"];
      if (isObject(delta)) {
        const text = delta["content"];
        if (typeof text === "string" && text !== "") {
          if (open !== "text") out += openBlock("text", { type: "text", text: "" });
          out += sseFrame("content_block_delta", {
            type: "content_block_delta",
            index,
            delta: { type: "text_delta", text },
          });
        }
        const calls = delta["tool_calls"];
        if (Array.isArray(calls)) {
          for (const call of calls) {
            if (!isObject(call)) continue;
            const fn = isObject(call["function"]) ? call["function"] : {};
            if (typeof call["id"] === "string" || open !== "tool") {
              out += openBlock("tool", {
                type: "tool_use",
                id: typeof call["id"] === "string" ? call["id"] : "",
                name: typeof fn["name"] === "string" ? fn["name"] : "",
                input: {},
              });
            }
            const args = fn["arguments"];
            if (typeof args === "string" && args !== "") {
              out += sseFrame("content_block_delta", {
                type: "content_block_delta",
                index,
                delta: { type: "input_json_delta", partial_json: args },
              });
            }
          }
        }
      }
      const finish = choice["finish_reason"];
      if (typeof finish === "string") stopReason = stopReasons[finish] ?? "end_turn";
      return out;
    },
    finish() {
      const head = started ? "" : start(undefined);
      return (
        head +
        close() +
        sseFrame("message_delta", {
          type: "message_delta",
          delta: { stop_reason: stopReason, stop_sequence: null },
          usage: anthropicUsage(usage),
        }) +
        sseFrame("message_stop", { type: "message_stop" })
      );
    },
  };
}
