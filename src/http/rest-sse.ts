import type { EventEmitter } from "node:events";
import { once } from "node:events";
import type { OutgoingHttpHeaders } from "node:http";
import type { Message } from "@bufbuild/protobuf";
import type { ConnectError } from "@connectrpc/connect";
import type { NodeServerResponse } from "../edge/exchange.js";
import { restErrorFromConnect } from "./rest-error.js";

/** One Server-Sent Event: `data: <json>`, or `event: <name>` and its data. */
export function sseEvent(json: string, event?: string): string {
  return event === undefined ? `data: ${json}\n\n` : `event: ${event}\ndata: ${json}\n\n`;
}

/** Writes a chunk and waits for the socket to drain; false when the client has gone. */
async function write(res: NodeServerResponse, chunk: string, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  if (res.write(chunk)) return true;
  try {
    await once(res as unknown as EventEmitter, "drain", { signal });
    return true;
  } catch {
    return false;
  }
}

/**
 * Writes a server stream as Server-Sent Events: `data: <json>` per message, waiting for the socket to
 * drain, and a failure as `event: error` with the error body. Every stream that fails ends with its error
 * event; a stream cut at the end of the shutdown grace too (its signal is aborted then, its connection not
 * yet), so the client retries rather than taking a truncated answer for a complete one. Only a client
 * that left gets none. `messages` throws wire errors (src/server/in-process-call.ts).
 */
export async function writeSse(
  res: NodeServerResponse,
  headers: OutgoingHttpHeaders,
  first: IteratorResult<Message>,
  messages: AsyncIterator<Message>,
  toJson: (message: Message) => string,
  signal: AbortSignal,
): Promise<void> {
  headers["content-type"] = "text/event-stream; charset=utf-8";
  headers["cache-control"] = "no-cache";
  res.writeHead(200, headers);
  let next = first;
  try {
    while (next.done !== true) {
      if (!(await write(res, sseEvent(toJson(next.value)), signal))) break;
      try {
        next = await messages.next();
      } catch (err) {
        if (!res.destroyed) res.write(sseEvent(restErrorFromConnect(err as ConnectError).body, "error"));
        break;
      }
    }
  } finally {
    if (next.done !== true) await messages.return?.();
  }
  res.end();
}
