import type { DescMessage, JsonObject, JsonValue, Message } from "@bufbuild/protobuf";
import {
  ChatCompletionChunkSchema,
  ChatCompletionRequestSchema,
  type ChatCompletionChunk,
  type ChatCompletionRequest,
} from "../../gen/apikeyserver/v1/chat_pb.js";
import { toRestJson } from "./rest-json.js";

/** One Server-Sent Event carrying a JSON text, as OpenAI frames its stream: `data: {chunk}\n\n`. */
export function sseEvent(json: string, event?: string): string {
  return event === undefined ? `data: ${json}\n\n` : `event: ${event}\ndata: ${json}\n\n`;
}

/**
 * The last event of a stream that finished well, as OpenAI sends it. OpenAI's SDKs and most hand-written
 * readers stop on it; a stream that ends without it ended badly (README, "Streaming").
 */
export const sseDone = "data: [DONE]\n\n";

/** Writes the messages of one server stream as JSON texts for SSE `data:` lines. */
export type StreamJsonWriter = (message: Message) => string;

const usageKey = ChatCompletionChunkSchema.field.usage.name;
const chunkKeys = ChatCompletionChunkSchema.fields.map((f) => f.name);

/**
 * The writer of one stream's messages: the REST JSON writer, plus OpenAI's `"usage": null` on every chunk
 * without usage when the request asked for `stream_options.include_usage` (OpenAI then sends the key on
 * every chunk and fills it on the last). A proto message field cannot tell `null` from absent, so this
 * depends on the request, not on a field option. Any other stream gets the REST JSON writer unchanged.
 */
export function streamJsonWriter(output: DescMessage, request: Message): StreamJsonWriter {
  const plain: StreamJsonWriter = (message) => JSON.stringify(toRestJson(output, message));
  if (output.typeName !== ChatCompletionChunkSchema.typeName) return plain;
  if (request.$typeName !== ChatCompletionRequestSchema.typeName) return plain;
  if ((request as ChatCompletionRequest).streamOptions?.includeUsage !== true) return plain;
  return (message) => {
    const chunk = message as ChatCompletionChunk;
    const json = toRestJson(ChatCompletionChunkSchema, chunk);
    if (chunk.usage !== undefined || !isObject(json)) return JSON.stringify(json);
    return JSON.stringify(withNullUsage(json));
  };
}

/** The chunk's JSON with `"usage": null` in the key order of the contract (as the REST writer orders nulls). */
function withNullUsage(json: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const key of chunkKeys) {
    const value = key === usageKey ? null : json[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}

function isObject(value: JsonValue): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
