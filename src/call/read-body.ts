import type { EventEmitter } from "node:events";
import type { NodeServerRequest } from "../edge/exchange.js";
import { requestTooLarge } from "../errors/index.js";

const emptyBody = Buffer.alloc(0);

/**
 * Reads a whole request body into one Buffer, for the codecs of the call pipeline (src/call/pipeline.ts). After each chunk `check(chunk, total, chunks)` may stop the
 * read by returning an error, which the promise rejects with (the rest of the body is left unread).
 * A request that closes before its end rejects with `closed()`.
 */
export function readBody(
  req: NodeServerRequest,
  check: (chunk: Buffer, total: number, chunks: readonly Buffer[]) => Error | undefined,
  closed: () => Error,
): Promise<Buffer> {
  if (req.readableEnded) return Promise.resolve(emptyBody);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const stream = req as unknown as EventEmitter;
    const cleanup = (): void => {
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("error", onError);
      stream.off("close", onClose);
    };
    function onData(chunk: Buffer): void {
      chunks.push(chunk);
      total += chunk.length;
      const stop = check(chunk, total, chunks);
      if (stop === undefined) return;
      cleanup();
      reject(stop);
    }
    function onEnd(): void {
      cleanup();
      const first = chunks[0];
      if (first === undefined) resolve(emptyBody);
      else resolve(chunks.length === 1 ? first : Buffer.concat(chunks, total));
    }
    function onError(err: unknown): void {
      cleanup();
      reject(err instanceof Error ? err : new Error(String(err)));
    }
    function onClose(): void {
      cleanup();
      reject(closed());
    }
    stream.on("data", onData);
    stream.on("end", onEnd);
    stream.on("error", onError);
    stream.on("close", onClose);
  });
}

const bodyTooLarge = new Error("request body over the limit");

/**
 * The request body stopped before its end: the client went away (a closed connection, an HTTP/2 reset),
 * or the server cut it (the body deadline answered 408 and closed the connection). Not a failure of the
 * server: there is no one left to answer, and the exchange's access line says how it ended.
 */
export class RequestBodyEnded extends Error {
  constructor(cause?: unknown) {
    super("the request body ended early", cause === undefined ? {} : { cause });
    this.name = "RequestBodyEnded";
  }
}

/**
 * Reads the whole body; throws AppError `request_too_large` when it is larger than `maxBytes` (declared
 * or sent), leaving the rest unread (the caller's 413 then closes an HTTP/1.1 connection), and
 * RequestBodyEnded when the body stops before its end.
 */
export async function readRequestBody(req: NodeServerRequest, maxBytes: number): Promise<Buffer> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > maxBytes) throw requestTooLarge(maxBytes);
  try {
    return await readBody(
      req,
      (_chunk, total) => (total > maxBytes ? bodyTooLarge : undefined),
      () => new RequestBodyEnded(),
    );
  } catch (err) {
    if (err instanceof RequestBodyEnded) throw err;
    if (err !== bodyTooLarge) throw new RequestBodyEnded(err);
    req.pause();
    throw requestTooLarge(maxBytes);
  }
}
