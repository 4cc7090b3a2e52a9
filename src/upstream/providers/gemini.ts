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

export const geminiDefaultBaseUrl = "https://generativelanguage.googleapis.com/v1beta";
const kind = "gemini";

/** OpenAI request fields and what this adapter does with them (anything else is a 400 naming it). */
const support: FieldSupport = {
  ...translatedFields,
  n: true,
  seed: true,
  presence_penalty: true,
  frequency_penalty: true,
  response_format: true,
  parallel_tool_calls: (v) => v === true,
  logprobs: neutral.no,
  store: neutral.no,
  modalities: neutral.textOnly,
};

/** Gemini `finishReason` → OpenAI `finish_reason` (STOP with function calls becomes `tool_calls`). */
const finishReasons: Readonly<Record<string, string>> = {
  STOP: "stop",
  MAX_TOKENS: "length",
  SAFETY: "content_filter",
  RECITATION: "content_filter",
  BLOCKLIST: "content_filter",
  PROHIBITED_CONTENT: "content_filter",
  SPII: "content_filter",
  IMAGE_SAFETY: "content_filter",
};

/**
 * The Gemini API (`POST {base_url}/models/{model}:generateContent`, `:streamGenerateContent?alt=sse`), the
 * key in the `x-goog-api-key` header and never in the URL. Roles become `user`/`model`, system messages
 * `systemInstruction`, tools `functionDeclarations` (JSON Schema as is), sampling fields `generationConfig`;
 * candidates, finish reasons and `usageMetadata` come back as OpenAI's shapes. Gemini names no tool call,
 * so ids are made from the response id; tool results find their function's name through those ids.
 */
export function createGeminiAdapter(deps: AdapterDeps): ProviderAdapter {
  const { http, clock } = deps;
  const targetOf = perKey((provider, key) => {
    if (key === undefined) throw misconfigured(provider, "api_key is missing");
    const url = new URL((provider.baseUrl ?? geminiDefaultBaseUrl).replace(/\/+$/, ""));
    return {
      origin: url.origin,
      prefix: `${url.pathname.replace(/\/+$/, "")}/models/`,
      headers: Object.freeze({ "x-goog-api-key": key }),
    };
  });

  function post(call: UpstreamCall, stream: boolean): HttpPost {
    const { origin, prefix, headers } = targetOf(call);
    const model = encodeURIComponent(stringField(call.body, "model") ?? "");
    return {
      provider: call.provider,
      origin,
      path: `${prefix}${model}${stream ? ":streamGenerateContent?alt=sse" : ":generateContent"}`,
      headers,
      body: toGeminiRequest(call),
      signal: call.signal,
    };
  }

  const created = () => Math.floor(clock.now() / 1000);

  return {
    kind,

    complete(call) {
      return translatedComplete(
        deps,
        post(call, false),
        (answer, at) => fromGeminiResponse(call, answer, at),
        (answer) => (isObject(answer["usageMetadata"]) ? tokenUsageOf(answer["usageMetadata"]) : undefined),
      );
    },

    async *stream(call) {
      const wantUsage = includeUsage(call.body);
      let chunk: ReturnType<typeof chunkFactory> | undefined;
      /** The latest `usageMetadata` (each event carries the counts so far; the last one is final). */
      let usage: JsonObject | undefined;
      let finished = false;
      /** Tool calls so far per candidate, for their OpenAI index and id. */
      const toolCounts = new Map<number, number>();
      for await (const event of http.postEventStream(post(call, true))) {
        const data = parseEventJson(call, event.data);
        if ("error" in data) throw streamFailure(call, `error event: ${JSON.stringify(data["error"])}`);
        const head = headOf(call, data, created());
        const candidates = candidatesOf(call, data);
        if (chunk === undefined) {
          chunk = chunkFactory(head);
          const indexes = candidates.length > 0 ? candidates.map((c) => c.index) : [0];
          yield chunk(indexes.map((i) => chunkChoice(i, { role: "assistant", content: "" }, null)));
        }
        if (isObject(data["usageMetadata"])) {
          usage = data["usageMetadata"];
          // The counts so far (the prompt's final): a stream cut before its end is charged these with its
          // output estimated (docs/usage.md); the last event's are final.
          call.onUsage?.({ ...tokenUsageOf(usage), estimated: true });
        }
        if (candidates.length === 0 && blockReasonOf(data) !== undefined) {
          yield chunk([chunkChoice(0, {}, "content_filter")]);
          finished = true;
        }
        for (const candidate of candidates) {
          const first = toolCounts.get(candidate.index) ?? 0;
          const { text, toolCalls } = partsContent(candidate.parts, head.id, candidate.index, first);
          toolCounts.set(candidate.index, first + toolCalls.length);
          if (text !== null || toolCalls.length > 0) {
            const delta: JsonObject = {
              ...(text === null ? {} : { content: text }),
              ...(toolCalls.length > 0
                ? { tool_calls: toolCalls.map((toolCall, k) => ({ index: first + k, ...toolCall })) }
                : {}),
            };
            yield chunk([chunkChoice(candidate.index, delta, null)]);
          }
          if (candidate.finishReason !== undefined) {
            const calledTools = (toolCounts.get(candidate.index) ?? 0) > 0;
            yield chunk([
              chunkChoice(candidate.index, {}, finishReason(candidate.finishReason, calledTools)),
            ]);
            finished = true;
          }
        }
      }
      // The Gemini stream has no end marker: an answer is complete once a finish reason arrived.
      if (!finished || chunk === undefined)
        throw streamFailure(call, "event stream ended before a finish reason");
      if (usage !== undefined) {
        call.onUsage?.(tokenUsageOf(usage));
        if (wantUsage) yield chunk([], { usage: usageOf(usage) });
      }
    },
  };
}

interface Candidate {
  readonly index: number;
  readonly parts: JsonValue[];
  readonly finishReason: string | undefined;
}

function candidatesOf(call: UpstreamCall, data: JsonObject): Candidate[] {
  const candidates = data["candidates"];
  if (candidates === undefined) return [];
  if (!Array.isArray(candidates)) throw badAnswer(call, "candidates is not an array");
  return candidates.map((candidate, i) => {
    const parts = field(field(candidate, "content"), "parts");
    const index = field(candidate, "index");
    return {
      index: typeof index === "number" ? index : i,
      parts: Array.isArray(parts) ? parts : [],
      finishReason: stringField(candidate, "finishReason"),
    };
  });
}

function blockReasonOf(data: JsonObject): string | undefined {
  return stringField(data["promptFeedback"], "blockReason");
}

function headOf(call: UpstreamCall, data: JsonObject, created: number) {
  return {
    id: stringField(data, "responseId") ?? "",
    created,
    model: stringField(data, "modelVersion") ?? stringField(call.body, "model") ?? "",
  };
}

function finishReason(reason: string, calledTools: boolean): string {
  const mapped = finishReasons[reason] ?? "stop";
  return mapped === "stop" && calledTools ? "tool_calls" : mapped;
}

/** The text (thought parts left out) and function calls of a candidate's parts. */
function partsContent(parts: JsonValue[], responseId: string, candidate: number, firstTool: number) {
  let text: string | null = null;
  const toolCalls: JsonObject[] = [];
  for (const part of parts) {
    if (field(part, "thought") === true) continue;
    const partText = stringField(part, "text");
    if (partText !== undefined) text = (text ?? "") + partText;
    const call = field(part, "functionCall");
    if (isObject(call)) {
      const n = firstTool + toolCalls.length;
      toolCalls.push({
        id: stringField(call, "id") ?? `call_${responseId}_${candidate}_${n}`,
        type: "function",
        function: { name: stringField(call, "name") ?? "", arguments: JSON.stringify(call["args"] ?? {}) },
      });
    }
  }
  return { text, toolCalls };
}

/** `usageMetadata` as OpenAI usage: thinking counts as completion, as OpenAI counts reasoning tokens. */
function usageOf(metadata: JsonObject): JsonObject {
  const number = (name: string) => (typeof metadata[name] === "number" ? metadata[name] : undefined);
  const prompt = number("promptTokenCount") ?? 0;
  const thoughts = number("thoughtsTokenCount");
  const completion = (number("candidatesTokenCount") ?? 0) + (thoughts ?? 0);
  return usageJson({
    prompt,
    completion,
    total: number("totalTokenCount") ?? prompt + completion,
    cached: number("cachedContentTokenCount"),
    reasoning: thoughts,
  });
}

/**
 * `usageMetadata` as TokenUsage: thinking counts as completion and as reasoning; cached content is part of
 * the prompt; audio from the per-modality details (`promptTokensDetails`, `candidatesTokensDetails`).
 */
function tokenUsageOf(metadata: JsonObject): TokenUsage {
  const number = (name: string) => (typeof metadata[name] === "number" ? metadata[name] : undefined);
  const prompt = number("promptTokenCount") ?? 0;
  const thoughts = number("thoughtsTokenCount");
  const completion = (number("candidatesTokenCount") ?? 0) + (thoughts ?? 0);
  return withDetails(
    {
      promptTokens: prompt,
      completionTokens: completion,
      totalTokens: number("totalTokenCount") ?? prompt + completion,
    },
    {
      cachedInputTokens: number("cachedContentTokenCount"),
      reasoningTokens: thoughts,
      audioInputTokens: modalityTokens(metadata["promptTokensDetails"], "AUDIO"),
      audioOutputTokens: modalityTokens(metadata["candidatesTokensDetails"], "AUDIO"),
    },
  );
}

/** The tokens of one modality in a `ModalityTokenCount` list; undefined when it is not listed. */
function modalityTokens(details: JsonValue | undefined, modality: string): number | undefined {
  if (!Array.isArray(details)) return undefined;
  for (const entry of details) {
    if (field(entry, "modality") !== modality) continue;
    const count = field(entry, "tokenCount");
    return typeof count === "number" ? count : undefined;
  }
  return undefined;
}

function fromGeminiResponse(call: UpstreamCall, body: JsonObject, created: number): JsonObject {
  const head = headOf(call, body, created);
  const candidates = candidatesOf(call, body);
  if (candidates.length === 0 && blockReasonOf(body) === undefined) {
    throw badAnswer(call, "no candidates and no block reason");
  }
  const choices =
    candidates.length === 0
      ? [completionChoice(0, null, [], "content_filter")]
      : candidates.map((candidate) => {
          const { text, toolCalls } = partsContent(candidate.parts, head.id, candidate.index, 0);
          return completionChoice(
            candidate.index,
            text,
            toolCalls,
            finishReason(candidate.finishReason ?? "STOP", toolCalls.length > 0),
          );
        });
  const usage = body["usageMetadata"];
  return completionJson({ ...head, choices, usage: isObject(usage) ? usageOf(usage) : undefined });
}

/** The OpenAI request as a Gemini `GenerateContentRequest`; 400 naming the field for what Gemini cannot do. */
function toGeminiRequest(call: UpstreamCall): JsonObject {
  const { body } = call;
  checkSupported(body, kind, support);
  const system: JsonObject[] = [];
  const contents: JsonObject[] = [];
  /** tool_call_id → function name, from the assistant messages so far (Gemini answers by name). */
  const toolNames = new Map<string, string>();
  for (const { message, role, path } of messagesOf(body)) {
    checkMessageFields(message, path, kind);
    const contentPath = `${path}.content`;
    switch (role) {
      case "system":
      case "developer":
        system.push({ text: textOnly(message["content"], contentPath, kind) });
        break;
      case "user":
        contents.push({
          role: "user",
          parts: partsOf(message["content"], contentPath).map(({ part, path: p }) => userPart(part, p)),
        });
        break;
      case "assistant": {
        const parts: JsonObject[] = [];
        const text = textOnly(message["content"], contentPath, kind);
        if (text !== "") parts.push({ text });
        for (const toolCall of assistantToolCalls(message, path, kind)) {
          if (toolCall.id !== undefined) toolNames.set(toolCall.id, toolCall.name);
          parts.push({ functionCall: { name: toolCall.name, args: toolCall.args } });
        }
        if (parts.length === 0)
          throw invalid(contentPath, "an assistant message needs content or tool_calls");
        contents.push({ role: "model", parts });
        break;
      }
      case "tool": {
        const id = message["tool_call_id"];
        if (typeof id !== "string") throw invalid(`${path}.tool_call_id`, "is required on a tool message");
        const name = toolNames.get(id);
        if (name === undefined) {
          throw invalid(`${path}.tool_call_id`, "matches no tool call of an earlier assistant message");
        }
        const part = {
          functionResponse: { name, response: { content: textOnly(message["content"], contentPath, kind) } },
        };
        // Responses to one turn's calls travel together in one user turn.
        const last = contents.at(-1);
        const lastParts = last?.["parts"];
        if (
          last?.["role"] === "user" &&
          Array.isArray(lastParts) &&
          isObject(field(lastParts.at(-1), "functionResponse"))
        ) {
          lastParts.push(part);
        } else {
          contents.push({ role: "user", parts: [part] });
        }
        break;
      }
      default:
        throw unsupportedRole(role, path, kind);
    }
  }

  const request: JsonObject = {
    contents,
    ...(system.length > 0 ? { systemInstruction: { parts: system } } : {}),
  };
  const tools = toolsOf(body["tools"]);
  if (tools !== undefined) request["tools"] = tools;
  const toolConfig = toolConfigOf(body["tool_choice"]);
  if (toolConfig !== undefined) request["toolConfig"] = toolConfig;
  const config = generationConfigOf(call);
  if (Object.keys(config).length > 0) request["generationConfig"] = config;
  return request;
}

function generationConfigOf(call: UpstreamCall): JsonObject {
  const { body } = call;
  const config: JsonObject = {};
  const copy = (from: string, to: string) => {
    if (typeof body[from] === "number") config[to] = body[from];
  };
  copy("temperature", "temperature");
  copy("top_p", "topP");
  copy("n", "candidateCount");
  copy("seed", "seed");
  copy("presence_penalty", "presencePenalty");
  copy("frequency_penalty", "frequencyPenalty");
  const max = maxTokensOf(call);
  if (max !== undefined) config["maxOutputTokens"] = max;
  const stop = stopList(body["stop"]);
  if (stop !== undefined) config["stopSequences"] = stop;
  const format = body["response_format"];
  switch (field(format, "type")) {
    case undefined:
    case "text":
      break;
    case "json_object":
      config["responseMimeType"] = "application/json";
      break;
    case "json_schema": {
      const schema = field(field(format, "json_schema"), "schema");
      if (!isObject(schema)) throw invalid("response_format.json_schema.schema", "is required");
      config["responseMimeType"] = "application/json";
      config["responseJsonSchema"] = schema;
      break;
    }
    default:
      throw invalid("response_format.type", "must be text, json_object or json_schema");
  }
  return config;
}

function userPart(part: JsonObject, path: string): JsonObject {
  switch (part["type"]) {
    case "text":
      return { text: textPartOf(part, path) };
    case "image_url": {
      const data = parseDataUrl(imageUrlOf(part, path));
      if (data === undefined) {
        throw invalid(`${path}.image_url.url`, `provider kind "${kind}" takes images only as data: URLs`);
      }
      return { inlineData: { mimeType: data.mediaType, data: data.data } };
    }
    default:
      throw unsupportedPart(part, path, kind);
  }
}

function toolsOf(tools: JsonValue | undefined): JsonObject[] | undefined {
  const declared = functionTools(tools, kind);
  if (declared.length === 0) return undefined;
  const functionDeclarations = declared.map(({ name, description, parameters }) => ({
    name,
    ...(description === undefined ? {} : { description }),
    ...(parameters === undefined ? {} : { parametersJsonSchema: parameters }),
  }));
  return [{ functionDeclarations }];
}

const modes = { auto: "AUTO", required: "ANY", none: "NONE" } as const;

function toolConfigOf(choice: JsonValue | undefined): JsonObject | undefined {
  const wanted = toolChoiceOf(choice);
  if (wanted === undefined) return undefined;
  return {
    functionCallingConfig:
      wanted.mode === "function"
        ? { mode: "ANY", allowedFunctionNames: [wanted.name] }
        : { mode: modes[wanted.mode] },
  };
}
