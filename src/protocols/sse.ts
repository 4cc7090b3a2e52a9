import type { EventEmitter } from "node:events";
import { once } from "node:events";
import type { OutgoingHttpHeaders } from "node:http";
import type { DescMessage, JsonObject, Message } from "@bufbuild/protobuf";
import type { ConnectError } from "@connectrpc/connect";
import {
  ChatCompletionChunkSchema,
  ChatCompletionRequestSchema,
  type ChatCompletionChunk,
  type ChatCompletionRequest,
} from "../../gen/apikeyserver/v1/chat_pb.js";
import type { NodeServerResponse } from "../edge/exchange.js";
import { toRestJson } from "../json/index.js";
import { isJsonObject } from "./http-write.js";

/** One Server-Sent Event: `data: <json>`, or `event: <name>` and its data (OpenAI's framing). */
export function sseEvent(json: string, event?: string): string {
  return event === undefined ? `data: ${json}\n\n` : `event: ${event}\ndata: ${json}\n\n`;
}

/**
 * The last event of a stream that finished well, as OpenAI sends it. OpenAI's SDKs and most hand-written
 * readers stop on it; a stream that ends without it ended badly (README, "Streams over REST").
 */
export const sseDone = "data: [DONE]\n\n";

/** Writes a chunk and waits for the socket to drain; false when the client has gone. */
export async function writeSseChunk(
  res: NodeServerResponse,
  chunk: string,
  signal: AbortSignal,
): Promise<boolean> {
  if (signal.aborted) return false;
  if (res.write(chunk)) return true;
  try {
    await once(res as unknown as EventEmitter, "drain", { signal });
    return true;
  } catch {
    return false;
  }
}

/** How a surface frames its stream as Server-Sent Events. */
export interface SseFraming<T> {
  /** The SSE text of one message. */
  readonly frame: (message: T) => string;
  /** The SSE text of the error that ends a failed stream. */
  readonly errorFrame: (err: ConnectError) => string;
  /** The last event of a stream that finished well (OpenAI's `[DONE]`), where the surface sends one. */
  readonly done?: string;
}

/**
 * Writes a server stream as Server-Sent Events, each message framed by the surface and written after the
 * socket drained, then the surface's `done` event when the stream finished; a failure as the surface's
 * error event and nothing after it. Every stream that fails ends with its error event; a stream cut at the
 * end of the shutdown grace too (its signal is aborted then, its connection not yet), so the client retries
 * rather than taking a truncated answer for a complete one. Only a client that left gets none. `messages`
 * throws wire errors (src/call/in-process-call.ts).
 */
export async function writeSse<T>(
  res: NodeServerResponse,
  headers: OutgoingHttpHeaders,
  first: IteratorResult<T>,
  messages: AsyncIterator<T>,
  framing: SseFraming<T>,
  signal: AbortSignal,
): Promise<void> {
  headers["content-type"] = "text/event-stream; charset=utf-8";
  headers["cache-control"] = "no-cache";
  res.writeHead(200, headers);
  let next = first;
  try {
    while (next.done !== true) {
      if (!(await writeSseChunk(res, framing.frame(next.value), signal))) break;
      try {
        next = await messages.next();
      } catch (err) {
        if (!res.destroyed) res.write(framing.errorFrame(err as ConnectError));
        break;
      }
    }
    if (next.done === true && framing.done !== undefined) await writeSseChunk(res, framing.done, signal);
  } finally {
    if (next.done !== true) await messages.return?.();
  }
  res.end();
}

const usageKey = ChatCompletionChunkSchema.field.usage.name;
const chunkKeys = ChatCompletionChunkSchema.fields.map((f) => f.name);

/**
 * The JSON writer of one stream's messages: the REST JSON writer, plus OpenAI's `"usage": null` on every
 * chunk without usage when the request asked for `stream_options.include_usage` (OpenAI then sends the key
 * on every chunk and fills it on the last). A proto message field cannot tell `null` from absent, so this
 * depends on the request, not on a field option. Any other stream gets the REST JSON writer unchanged.
 */
export function streamJsonWriter(output: DescMessage, request: Message): (message: Message) => string {
  const plain = (message: Message): string => JSON.stringify(toRestJson(output, message));
  if (output.typeName !== ChatCompletionChunkSchema.typeName) return plain;
  if (request.$typeName !== ChatCompletionRequestSchema.typeName) return plain;
  if ((request as ChatCompletionRequest).streamOptions?.includeUsage !== true) return plain;
  return (message) => {
    const chunk = message as ChatCompletionChunk;
    const json = toRestJson(ChatCompletionChunkSchema, chunk);
    if (chunk.usage !== undefined || !isJsonObject(json)) return JSON.stringify(json);
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
