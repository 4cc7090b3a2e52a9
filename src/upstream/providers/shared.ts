import { AppError } from "../../errors/index.js";
import type { ProviderConfig } from "../../secrets/types.js";
import { UpstreamFailure } from "../failure.js";
import type { HttpPost, UpstreamHttp } from "../http.js";
import type { JsonObject, JsonValue, TokenUsage, UpstreamCall, UpstreamResult } from "../types.js";

// Helpers the translating adapters (anthropic, gemini) share: reading the OpenAI request, refusing what a
// provider cannot do, and building OpenAI-shaped answers and chunks.

export function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function field(value: JsonValue | undefined, key: string): JsonValue | undefined {
  return isObject(value) ? value[key] : undefined;
}

export function stringField(value: JsonValue | undefined, key: string): string | undefined {
  const v = field(value, key);
  return typeof v === "string" ? v : undefined;
}

/** The caller's request cannot be expressed for this provider: 400 naming the field. */
export function invalid(path: string, problem: string): AppError {
  return new AppError("invalid_argument", { message: `${path}: ${problem}` });
}

/** A provider answer that breaks its own protocol (502; the detail goes to the log only). */
export function streamFailure(call: UpstreamCall, detail: string): AppError {
  return new AppError("upstream_error", { cause: new UpstreamFailure(call.provider, detail) });
}

/** A provider entry that cannot work (a 502 for the caller; the log says what is missing). */
export function misconfigured(provider: ProviderConfig, detail: string): AppError {
  return new AppError("upstream_error", {
    cause: new UpstreamFailure(provider, `misconfigured: ${detail}`),
  });
}

/** One SSE event's data as a JSON object, or a 502. */
export function parseEventJson(call: UpstreamCall, data: string): JsonObject {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    throw streamFailure(call, "event with invalid JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw streamFailure(call, "event that is not a JSON object");
  }
  return parsed as JsonObject;
}

/** A provider answer that is JSON but not the shape its API documents (502). */
export function badAnswer(call: UpstreamCall, detail: string): AppError {
  return streamFailure(call, `unexpected answer: ${detail}`);
}

/**
 * What an adapter does with each OpenAI request field: `true` when it translates the field, or a predicate
 * accepting only the value that asks for nothing the provider lacks (`n: 1`, `logprobs: false`). A field
 * that is present, not null and neither is refused with 400 naming it (README, API: never a silent drop), so a
 * field added to the contract later is refused until an adapter learns it.
 */
export type FieldSupport = Readonly<Record<string, true | ((value: JsonValue) => boolean)>>;

export function checkSupported(body: JsonObject, kind: string, support: FieldSupport): void {
  for (const [name, value] of Object.entries(body)) {
    if (value === null) continue;
    const rule = support[name];
    if (rule === true || (rule !== undefined && rule(value))) continue;
    throw invalid(name, `not supported by provider kind "${kind}"`);
  }
}

/** Checks every message's fields the same way, naming `messages[i].field`. */
export function checkMessageFields(
  message: JsonObject,
  path: string,
  kind: string,
  allowed: readonly string[] = translatedMessageFields,
): void {
  for (const [name, value] of Object.entries(message)) {
    if (value !== null && !allowed.includes(name)) {
      throw invalid(`${path}.${name}`, `not supported by provider kind "${kind}"`);
    }
  }
}

/** The fields every translating adapter maps (messages, limits, sampling, stop, streaming, tools). */
export const translatedFields: FieldSupport = {
  model: true,
  messages: true,
  max_tokens: true,
  max_completion_tokens: true,
  temperature: true,
  top_p: true,
  stop: true,
  stream: true,
  stream_options: true,
  tools: true,
  tool_choice: true,
};

/** Message fields the translating adapters map; others (`name`, `audio`, ...) are refused. */
export const translatedMessageFields = ["role", "content", "tool_calls", "tool_call_id"] as const;

export function unsupportedRole(role: string, path: string, kind: string): AppError {
  return invalid(`${path}.role`, `role ${JSON.stringify(role)} is not supported by provider kind "${kind}"`);
}

export const neutral = {
  one: (v: JsonValue) => v === 1,
  zero: (v: JsonValue) => v === 0,
  no: (v: JsonValue) => v === false,
  textOnly: (v: JsonValue) => Array.isArray(v) && v.every((m) => m === "text"),
} as const;

/** The messages array, each an object with a string role (the chat service checked both). */
export function messagesOf(body: JsonObject): { message: JsonObject; role: string; path: string }[] {
  const messages = body["messages"];
  if (!Array.isArray(messages)) throw invalid("messages", "must be an array");
  return messages.map((message, i) => {
    const path = `messages[${i}]`;
    if (!isObject(message)) throw invalid(path, "must be an object");
    const role = message["role"];
    if (typeof role !== "string") throw invalid(`${path}.role`, "must be a string");
    return { message, role, path };
  });
}

/** A message's content as a list of parts (a string is one text part; null or absent is none). */
export function partsOf(content: JsonValue | undefined, path: string): { part: JsonObject; path: string }[] {
  if (content === undefined || content === null) return [];
  if (typeof content === "string") return [{ part: { type: "text", text: content }, path }];
  if (!Array.isArray(content)) throw invalid(path, "must be a string or an array of content parts");
  return content.map((part, j) => {
    const partPath = `${path}[${j}]`;
    if (!isObject(part)) throw invalid(partPath, "must be an object");
    return { part, path: partPath };
  });
}

/** The text of a content that may only hold text (system prompts, tool results). */
export function textOnly(content: JsonValue | undefined, path: string, kind: string): string {
  return partsOf(content, path)
    .map(({ part, path: partPath }) => {
      const text = part["text"];
      if (part["type"] !== "text" || typeof text !== "string") {
        throw invalid(`${partPath}.type`, `only text parts are supported here by provider kind "${kind}"`);
      }
      return text;
    })
    .join("\n");
}

/** `data:<media type>;base64,<data>` split into its parts; undefined for any other URL. */
export function parseDataUrl(url: string): { mediaType: string; data: string } | undefined {
  const match = /^data:([\w.+-]+\/[\w.+-]+);base64,(.*)$/s.exec(url);
  return match ? { mediaType: match[1] ?? "", data: match[2] ?? "" } : undefined;
}

/** A tool call's `arguments` string as the JSON object providers want. */
export function parseArguments(args: JsonValue | undefined, path: string): JsonObject {
  if (typeof args !== "string") throw invalid(path, "must be a string of JSON");
  let parsed: unknown;
  try {
    parsed = args.trim() === "" ? {} : JSON.parse(args);
  } catch {
    throw invalid(path, "must be valid JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw invalid(path, "must be a JSON object");
  }
  return parsed as JsonObject;
}

/** The caller's token limit, else the cap (the error table, src/errors/app-error.ts); providers that require a limit always get one. */
export function maxTokensOf(call: UpstreamCall): number | undefined {
  for (const name of ["max_completion_tokens", "max_tokens"]) {
    const value = call.body[name];
    if (typeof value === "number") return value;
  }
  return call.maxTokensCap;
}

/** OpenAI's `stop` (a string or a list) as a list. */
export function stopList(stop: JsonValue | undefined): string[] | undefined {
  if (stop === undefined || stop === null) return undefined;
  if (typeof stop === "string") return [stop];
  if (Array.isArray(stop)) {
    return stop.map((s, i) => {
      if (typeof s !== "string") throw invalid(`stop[${i}]`, "must be a string");
      return s;
    });
  }
  throw invalid("stop", "must be a string or an array of strings");
}

export function includeUsage(body: JsonObject): boolean {
  return field(body["stream_options"], "include_usage") === true;
}

/** OpenAI's `usage` object, with the details only when the provider reported them. */
export function usageJson(usage: {
  prompt: number;
  completion: number;
  total?: number | undefined;
  cached?: number | undefined;
  reasoning?: number | undefined;
}): JsonObject {
  return {
    prompt_tokens: usage.prompt,
    completion_tokens: usage.completion,
    total_tokens: usage.total ?? usage.prompt + usage.completion,
    ...(usage.cached === undefined ? {} : { prompt_tokens_details: { cached_tokens: usage.cached } }),
    ...(usage.reasoning === undefined
      ? {}
      : { completion_tokens_details: { reasoning_tokens: usage.reasoning } }),
  };
}

/** Builds `chat.completion.chunk`s of one answer (the fields OpenAI sends on every chunk). */
export function chunkFactory(head: { id: string; created: number; model: string }) {
  return (choices: JsonValue[], extra: JsonObject = {}): JsonObject => ({
    id: head.id,
    object: "chat.completion.chunk",
    created: head.created,
    model: head.model,
    system_fingerprint: null,
    choices,
    ...extra,
  });
}

export function chunkChoice(index: number, delta: JsonObject, finishReason: string | null): JsonObject {
  return { index, delta, logprobs: null, finish_reason: finishReason };
}

/** A whole `chat.completion` in the shape OpenAI sends it. */
export function completionJson(head: {
  id: string;
  created: number;
  model: string;
  choices: JsonObject[];
  usage: JsonObject | undefined;
}): JsonObject {
  return {
    id: head.id,
    object: "chat.completion",
    created: head.created,
    model: head.model,
    choices: head.choices,
    ...(head.usage === undefined ? {} : { usage: head.usage }),
    system_fingerprint: null,
  };
}

/** One choice of a `chat.completion`: text (or null) and tool calls. */
export function completionChoice(
  index: number,
  text: string | null,
  toolCalls: JsonObject[],
  finishReason: string,
): JsonObject {
  return {
    index,
    message: {
      role: "assistant",
      content: text,
      refusal: null,
      ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
      annotations: [],
    },
    logprobs: null,
    finish_reason: finishReason,
  };
}

/** The function tools of a request, checked (only `function` tools; `strict` is refused, not dropped). */
export function functionTools(
  tools: JsonValue | undefined,
  kind: string,
): { name: string; description: string | undefined; parameters: JsonObject | undefined }[] {
  if (!Array.isArray(tools)) return [];
  return tools.map((tool, i) => {
    const path = `tools[${i}]`;
    if (field(tool, "type") !== "function") {
      throw invalid(`${path}.type`, `only function tools are supported by provider kind "${kind}"`);
    }
    const fn = field(tool, "function");
    if (field(fn, "strict") === true) {
      throw invalid(`${path}.function.strict`, `not supported by provider kind "${kind}"`);
    }
    const parameters = field(fn, "parameters");
    return {
      name: stringField(fn, "name") ?? "",
      description: stringField(fn, "description"),
      parameters: isObject(parameters) ? parameters : undefined,
    };
  });
}

/** An assistant message's tool calls with their arguments parsed (only `function` calls). */
export function assistantToolCalls(
  message: JsonObject,
  path: string,
  kind: string,
): { id: string | undefined; name: string; args: JsonObject }[] {
  const calls = message["tool_calls"];
  if (!Array.isArray(calls)) return [];
  return calls.map((toolCall, j) => {
    const callPath = `${path}.tool_calls[${j}]`;
    if (field(toolCall, "type") !== "function") {
      throw invalid(`${callPath}.type`, `only function tool calls are supported by provider kind "${kind}"`);
    }
    const fn = field(toolCall, "function");
    return {
      id: stringField(toolCall, "id"),
      name: stringField(fn, "name") ?? "",
      args: parseArguments(field(fn, "arguments"), `${callPath}.function.arguments`),
    };
  });
}

/** OpenAI's `tool_choice`: a mode, or one function the model must call; undefined when not given. */
export function toolChoiceOf(
  choice: JsonValue | undefined,
): { mode: "auto" | "required" | "none" } | { mode: "function"; name: string } | undefined {
  if (choice === undefined || choice === null) return undefined;
  if (choice === "auto" || choice === "required" || choice === "none") return { mode: choice };
  const name = stringField(field(choice, "function"), "name");
  if (field(choice, "type") === "function" && name !== undefined) return { mode: "function", name };
  throw invalid("tool_choice", 'must be "auto", "required", "none" or a function to call');
}

/** The URL of an `image_url` content part. */
export function imageUrlOf(part: JsonObject, path: string): string {
  const url = stringField(part["image_url"], "url");
  if (url === undefined) throw invalid(`${path}.image_url.url`, "is required");
  return url;
}

/** A text content part's text. */
export function textPartOf(part: JsonObject, path: string): string {
  const text = part["text"];
  if (typeof text !== "string") throw invalid(`${path}.text`, "must be a string");
  return text;
}

export function unsupportedPart(part: JsonObject, path: string, kind: string): AppError {
  return invalid(
    `${path}.type`,
    `content part ${JSON.stringify(part["type"])} is not supported by provider kind "${kind}"`,
  );
}

/**
 * A unary call of a translating adapter: post, translate the answer, read its usage from the provider's own
 * answer (`usageOf`), which keeps breakdowns OpenAI's shape has no field for (Anthropic's cache writes).
 */
export async function translatedComplete(
  deps: { readonly http: UpstreamHttp; readonly clock: { now(): number } },
  post: HttpPost,
  translate: (answer: JsonObject, created: number) => JsonObject,
  usageOf: (answer: JsonObject) => TokenUsage | undefined,
): Promise<UpstreamResult> {
  const started = deps.clock.now();
  const { status, body } = await deps.http.postJson(post);
  const answer = translate(body, Math.floor(started / 1000));
  return {
    body: answer,
    usage: usageOf(body),
    upstreamLatencyMs: deps.clock.now() - started,
    status,
  };
}
