import type { EventEmitter } from "node:events";
import type { NodeServerRequest } from "../edge/exchange.js";

const emptyBody = Buffer.alloc(0);

/**
 * Reads a whole request body into one Buffer, for the two paths that invoke calls in-process (the REST
 * transcoder and the unary gRPC fast path). After each chunk `check(chunk, total, chunks)` may stop the
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
