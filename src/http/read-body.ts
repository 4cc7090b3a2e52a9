import type { EventEmitter } from "node:events";
import type { NodeServerRequest } from "./http-call.js";

const emptyBody = Buffer.alloc(0);

class BodyClosedError extends Error {
  constructor() {
    super("the request body ended early");
    this.name = "BodyClosedError";
  }
}

/** Reads the whole body (undefined when it is larger than maxBytes: the rest is left unread). */
export function readBody(req: NodeServerRequest, maxBytes: number): Promise<Buffer | undefined> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > maxBytes) return Promise.resolve(undefined);
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
      total += chunk.length;
      if (total > maxBytes) {
        cleanup();
        req.pause();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    }
    function onEnd(): void {
      cleanup();
      if (total === 0) {
        resolve(emptyBody);
        return;
      }
      const first = chunks[0];
      resolve(chunks.length === 1 && first !== undefined ? first : Buffer.concat(chunks, total));
    }
    function onError(err: unknown): void {
      cleanup();
      reject(err instanceof Error ? err : new Error(String(err)));
    }
    function onClose(): void {
      cleanup();
      reject(new BodyClosedError());
    }
    stream.on("data", onData);
    stream.on("end", onEnd);
    stream.on("error", onError);
    stream.on("close", onClose);
  });
}
