import { ChatCompletionRequestSchema } from "../../../gen/apikeyserver/v1/chat_pb.js";
import type { ChatRequestView } from "../../chat/chat-core.js";
import { isObject, type JsonObject, type JsonValue } from "../../upstream/index.js";
import { AppError } from "../../errors/index.js";
import { readRequest } from "../../json/index.js";

/**
 * A Responses API request (OpenAI `POST /v1/responses`) taken apart: the chat request the core runs for
 * it (every provider kind speaks chat to the core, src/chat/chat-core.ts) and what the answer echoes back.
 */
export interface ResponsesRequest {
  readonly view: ChatRequestView;
  readonly stream: boolean;
  /** The request fields the response object repeats (instructions, tools, tool_choice...). */
  readonly echo: ResponseEcho;
}

/** What a response object repeats of its request, as OpenAI's does. */
export interface ResponseEcho {
  readonly model: string;
  readonly instructions: JsonValue;
  readonly maxOutputTokens: number | null;
  readonly metadata: JsonObject;
  readonly parallelToolCalls: boolean;
  readonly reasoningEffort: JsonValue;
  readonly temperature: number | null;
  readonly topP: number | null;
  readonly text: JsonObject;
  readonly toolChoice: JsonValue;
  readonly tools: JsonValue[];
  readonly user: JsonValue;
}

/**
 * The request fields served (README, "Responses API"); any other present, non-null field is a 400 naming
 * it, never silently dropped. `previous_response_id` and `conversation` need stored responses, which this
 * server never keeps: refused with a message saying to send the whole conversation.
 */
const served = new Set([
  "model",
  "input",
  "instructions",
  "tools",
  "tool_choice",
  "parallel_tool_calls",
  "max_output_tokens",
  "temperature",
  "top_p",
  "text",
  "reasoning",
  "metadata",
  "store",
  "include",
  "stream",
  "stream_options",
  "user",
  "truncation",
]);

/** `include` values that ask for nothing this server could add: no reasoning items reach a caller. */
const includable = new Set(["reasoning.encrypted_content"]);

const stateless = "this server stores no responses; send the whole conversation in input";

/**
 * Takes the caller's Responses JSON apart into the core's chat request; throws AppError
 * `invalid_argument` naming the field of a request it cannot serve.
 */
export function takeResponsesRequest(json: JsonObject, product: string): ResponsesRequest {
  for (const [key, value] of Object.entries(json)) {
    if (value === null) continue;
    if (key === "previous_response_id" || key === "conversation") {
      throw invalid(key, `not supported: ${stateless}`);
    }
    if (!served.has(key)) throw invalid(key, "not supported");
  }
  const model = optionalString(json, "model") ?? "";
  const stream = optionalBool(json, "stream") ?? false;
  const instructions = optionalString(json, "instructions");
  const maxOutputTokens = optionalInt(json, "max_output_tokens");
  const temperature = optionalNumber(json, "temperature");
  const topP = optionalNumber(json, "top_p");
  const parallelToolCalls = optionalBool(json, "parallel_tool_calls");
  optionalBool(json, "store");
  const user = optionalString(json, "user");
  const metadata = optionalObject(json, "metadata", "metadata");
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") throw invalid(`metadata.${k}`, "must be a string");
    }
  }
  const truncation = json["truncation"];
  if (truncation !== undefined && truncation !== null && truncation !== "disabled") {
    throw invalid("truncation", 'only "disabled" is supported');
  }
  const streamOptions = optionalObject(json, "stream_options", "stream_options");
  if (streamOptions !== undefined) {
    for (const [k, v] of Object.entries(streamOptions)) {
      // Obfuscation pads events against side channels on OpenAI's network; there is nothing to pad here.
      if (k === "include_obfuscation" && (typeof v === "boolean" || v === null)) continue;
      throw invalid(`stream_options.${k}`, "not supported");
    }
  }
  const include = json["include"];
  if (include !== undefined && include !== null) {
    if (!Array.isArray(include)) throw invalid("include", "must be an array of strings");
    include.forEach((v, i) => {
      if (typeof v !== "string" || !includable.has(v)) throw invalid(`include[${i}]`, "not supported");
    });
  }

  const body: JsonObject = { model };
  const messages: JsonObject[] = [];
  if (instructions !== undefined) messages.push({ role: "system", content: instructions });
  messages.push(...inputMessages(json["input"]));
  if (messages.length === 0 || (messages.length === 1 && instructions !== undefined)) {
    throw invalid("input", "is required");
  }
  body["messages"] = messages;
  const tools = toolsOf(json["tools"]);
  if (tools.length > 0) body["tools"] = tools;
  const toolChoice = toolChoiceOf(json["tool_choice"]);
  if (toolChoice !== undefined) body["tool_choice"] = toolChoice;
  if (parallelToolCalls !== undefined) body["parallel_tool_calls"] = parallelToolCalls;
  if (maxOutputTokens !== undefined) body["max_completion_tokens"] = maxOutputTokens;
  if (temperature !== undefined) body["temperature"] = temperature;
  if (topP !== undefined) body["top_p"] = topP;
  const text = textOf(json["text"]);
  if (text.format !== undefined) body["response_format"] = text.format;
  const effort = reasoningEffortOf(json["reasoning"]);
  if (effort !== undefined) body["reasoning_effort"] = effort;
  if (user !== undefined) body["user"] = user;
  // Never stored upstream, whatever the caller asked: a stored answer would live in the product's provider
  // account, readable by id by every caller of the product.
  body["store"] = false;
  if (stream) {
    body["stream"] = true;
    // The usage the response.completed event carries.
    body["stream_options"] = { include_usage: true };
  }
  // Checked and normalized as the chat surfaces' JSON is (src/services/chat-json.ts), so every provider
  // adapter gets the form it always gets.
  const normalized = readRequest(ChatCompletionRequestSchema, { ...body, product }) as JsonObject;
  const { product: _product, ...upstream } = normalized;
  const chatMessages = (upstream["messages"] as JsonObject[] | undefined) ?? [];

  return {
    stream,
    view: {
      product,
      model,
      stream: stream ? true : undefined,
      maxTokens: undefined,
      maxCompletionTokens: maxOutputTokens,
      maxCompletionTokensField: "max_output_tokens",
      messageCount: chatMessages.length,
      role: (i) => (chatMessages[i]?.["role"] as string | undefined) ?? "",
      upstreamBody: () => upstream,
    },
    echo: {
      model,
      instructions: instructions ?? null,
      maxOutputTokens: maxOutputTokens ?? null,
      metadata: metadata ?? {},
      parallelToolCalls: parallelToolCalls ?? true,
      reasoningEffort: effort ?? null,
      temperature: temperature ?? null,
      topP: topP ?? null,
      text: { format: text.echo },
      toolChoice: json["tool_choice"] ?? "auto",
      tools: (json["tools"] as JsonValue[] | undefined) ?? [],
      user: user ?? null,
    },
  };
}

/** The chat messages of `input`: a string (one user message) or a list of items. */
function inputMessages(input: JsonValue | undefined): JsonObject[] {
  if (input === undefined || input === null) return [];
  if (typeof input === "string") return [{ role: "user", content: input }];
  if (!Array.isArray(input)) throw invalid("input", "must be a string or an array of items");
  const messages: JsonObject[] = [];
  input.forEach((item, i) => {
    const path = `input[${i}]`;
    if (!isObject(item)) throw invalid(path, "must be an object");
    const type = item["type"] ?? "message";
    switch (type) {
      case "message":
        messages.push(messageOf(item, path));
        return;
      case "function_call": {
        const call = {
          id: requiredString(item, "call_id", path),
          type: "function",
          function: {
            name: requiredString(item, "name", path),
            arguments: requiredString(item, "arguments", path),
          },
        };
        // Consecutive calls are one assistant turn with several tool calls, as chat completions has them.
        const last = messages.at(-1);
        if (last !== undefined && last["role"] === "assistant") {
          const calls = (last["tool_calls"] as JsonValue[] | undefined) ?? [];
          last["tool_calls"] = [...calls, call];
        } else {
          messages.push({ role: "assistant", tool_calls: [call] });
        }
        return;
      }
      case "function_call_output": {
        const output = item["output"];
        const content =
          typeof output === "string"
            ? output
            : Array.isArray(output)
              ? partsOf(output, `${path}.output`)
              : undefined;
        if (content === undefined) throw invalid(`${path}.output`, "must be a string or an array of parts");
        messages.push({ role: "tool", tool_call_id: requiredString(item, "call_id", path), content });
        return;
      }
      case "reasoning":
        // A reasoning item a client hands back: chat completions has no place for it, and the model
        // needs none to go on (README, "Responses API").
        return;
      default:
        throw invalid(`${path}.type`, `${JSON.stringify(type)} is not supported`);
    }
  });
  return messages;
}

const roles: Readonly<Record<string, string>> = {
  user: "user",
  assistant: "assistant",
  system: "system",
  developer: "system",
};

const messageKeys: ReadonlySet<string> = new Set(["type", "role", "content", "id", "status"]);

function messageOf(item: JsonObject, path: string): JsonObject {
  for (const key of Object.keys(item)) {
    if (!messageKeys.has(key) && item[key] !== null) {
      throw invalid(`${path}.${key}`, "not supported");
    }
  }
  const role = item["role"];
  const chatRole = typeof role === "string" ? roles[role] : undefined;
  if (chatRole === undefined) throw invalid(`${path}.role`, "must be user, assistant, system or developer");
  const content = item["content"];
  if (typeof content === "string") return { role: chatRole, content };
  if (!Array.isArray(content)) throw invalid(`${path}.content`, "must be a string or an array of parts");
  const parts = partsOf(content, `${path}.content`);
  // Assistant turns and instructions are text in chat completions: their parts are joined.
  if (chatRole !== "user") {
    return {
      role: chatRole,
      content: parts
        .map((p, j) => {
          if (p["type"] !== "text")
            throw invalid(`${path}.content[${j}].type`, `not supported for role ${role as string}`);
          return p["text"] as string;
        })
        .join(""),
    };
  }
  return { role: chatRole, content: parts };
}

/** Responses content parts → chat content parts. */
function partsOf(parts: JsonValue[], path: string): JsonObject[] {
  return parts.map((part, j) => {
    const at = `${path}[${j}]`;
    if (!isObject(part)) throw invalid(at, "must be an object");
    switch (part["type"]) {
      case "input_text":
      case "output_text":
        return { type: "text", text: requiredString(part, "text", at) };
      case "refusal":
        return { type: "text", text: requiredString(part, "refusal", at) };
      case "input_image": {
        if (part["file_id"] !== undefined && part["file_id"] !== null) {
          throw invalid(`${at}.file_id`, "not supported: send the image as image_url (a URL or a data: URL)");
        }
        const url = requiredString(part, "image_url", at);
        const detail = part["detail"];
        return {
          type: "image_url",
          image_url: typeof detail === "string" && detail !== "auto" ? { url, detail } : { url },
        };
      }
      default:
        throw invalid(`${at}.type`, `${JSON.stringify(part["type"] ?? null)} is not supported`);
    }
  });
}

/** Function tools → chat tools; any other tool type (web search, file search...) is refused. */
function toolsOf(tools: JsonValue | undefined): JsonObject[] {
  if (tools === undefined || tools === null) return [];
  if (!Array.isArray(tools)) throw invalid("tools", "must be an array");
  return tools.map((tool, i) => {
    const path = `tools[${i}]`;
    if (!isObject(tool)) throw invalid(path, "must be an object");
    if (tool["type"] !== "function") {
      throw invalid(
        `${path}.type`,
        `${JSON.stringify(tool["type"] ?? null)} is not supported (only function)`,
      );
    }
    const fn: JsonObject = { name: requiredString(tool, "name", path) };
    const description = tool["description"];
    if (typeof description === "string") fn["description"] = description;
    const parameters = tool["parameters"];
    if (isObject(parameters)) fn["parameters"] = parameters;
    else if (parameters !== undefined && parameters !== null)
      throw invalid(`${path}.parameters`, "must be an object");
    const strict = tool["strict"];
    if (typeof strict === "boolean") fn["strict"] = strict;
    return { type: "function", function: fn };
  });
}

function toolChoiceOf(choice: JsonValue | undefined): JsonValue | undefined {
  if (choice === undefined || choice === null) return undefined;
  if (choice === "auto" || choice === "none" || choice === "required") return choice;
  if (isObject(choice) && choice["type"] === "function") {
    return { type: "function", function: { name: requiredString(choice, "name", "tool_choice") } };
  }
  throw invalid("tool_choice", 'must be "auto", "none", "required" or {"type": "function", "name": ...}');
}

/** `text.format` → chat `response_format`, and the format the response repeats. */
function textOf(text: JsonValue | undefined): { format: JsonObject | undefined; echo: JsonObject } {
  if (text === undefined || text === null) return { format: undefined, echo: { type: "text" } };
  if (!isObject(text)) throw invalid("text", "must be an object");
  for (const key of Object.keys(text)) {
    if (key !== "format" && text[key] !== null) throw invalid(`text.${key}`, "not supported");
  }
  const format = text["format"];
  if (format === undefined || format === null) return { format: undefined, echo: { type: "text" } };
  if (!isObject(format)) throw invalid("text.format", "must be an object");
  switch (format["type"]) {
    case "text":
      return { format: undefined, echo: { type: "text" } };
    case "json_object":
      return { format: { type: "json_object" }, echo: { type: "json_object" } };
    case "json_schema": {
      const schema = format["schema"];
      if (!isObject(schema)) throw invalid("text.format.schema", "is required");
      const jsonSchema: JsonObject = { name: requiredString(format, "name", "text.format"), schema };
      const description = format["description"];
      if (typeof description === "string") jsonSchema["description"] = description;
      const strict = format["strict"];
      if (typeof strict === "boolean") jsonSchema["strict"] = strict;
      return { format: { type: "json_schema", json_schema: jsonSchema }, echo: format };
    }
    default:
      throw invalid("text.format.type", "must be text, json_object or json_schema");
  }
}

function reasoningEffortOf(reasoning: JsonValue | undefined): string | undefined {
  if (reasoning === undefined || reasoning === null) return undefined;
  if (!isObject(reasoning)) throw invalid("reasoning", "must be an object");
  for (const key of Object.keys(reasoning)) {
    if (key !== "effort" && reasoning[key] !== null) throw invalid(`reasoning.${key}`, "not supported");
  }
  const effort = reasoning["effort"];
  if (effort === undefined || effort === null) return undefined;
  if (typeof effort !== "string") throw invalid("reasoning.effort", "must be a string");
  return effort;
}

function optionalString(json: JsonObject, key: string): string | undefined {
  const v = json[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw invalid(key, "must be a string");
  return v;
}

function optionalBool(json: JsonObject, key: string): boolean | undefined {
  const v = json[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw invalid(key, "must be a boolean");
  return v;
}

function optionalNumber(json: JsonObject, key: string): number | undefined {
  const v = json[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number") throw invalid(key, "must be a number");
  return v;
}

function optionalInt(json: JsonObject, key: string): number | undefined {
  const v = optionalNumber(json, key);
  if (v !== undefined && !Number.isSafeInteger(v)) throw invalid(key, "must be an integer");
  return v;
}

function optionalObject(json: JsonObject, key: string, path: string): JsonObject | undefined {
  const v = json[key];
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw invalid(path, "must be an object");
  return v;
}

function requiredString(json: JsonObject, key: string, path: string): string {
  const v = json[key];
  if (typeof v !== "string") throw invalid(`${path}.${key}`, "is required (a string)");
  return v;
}

function invalid(param: string, what: string): AppError {
  return new AppError("invalid_argument", { message: `${param}: ${what}`, param });
}
