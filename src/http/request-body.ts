import type { JsonValue } from "@bufbuild/protobuf";
import type { NodeServerRequest } from "../edge/exchange.js";
import { AppError, requestTooLarge } from "../errors/index.js";
import { checkJsonValues } from "../lib/message-limits.js";
import { headerValue } from "../server/node-headers.js";
import { readBody } from "../server/read-body.js";

// The request body of the HTTP surfaces (the REST transcoder and the OpenAI-compatible one): read whole up
// to the body limit, then parsed as JSON (docs/architecture.md, "Layers and what each owns").

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

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Parses a non-empty body as JSON: `application/json` with no content coding (AppError
 * `unsupported_media_type`, 415, otherwise), valid UTF-8 JSON (`invalid_argument` `Malformed JSON body`
 * otherwise).
 */
export function parseJsonBody(req: NodeServerRequest, body: Buffer): JsonValue {
  const mime = headerValue(req.headers["content-type"])?.split(";")[0]?.trim().toLowerCase();
  const encoding = headerValue(req.headers["content-encoding"]);
  if (mime !== "application/json" || (encoding !== undefined && encoding !== "identity")) {
    throw new AppError("unsupported_media_type");
  }
  // Authenticated (the precheck ran): the parse is bounded (src/lib/message-limits.ts) before it starts.
  checkJsonValues(body);
  try {
    return JSON.parse(utf8.decode(body)) as JsonValue;
  } catch {
    throw new AppError("invalid_argument", { message: "Malformed JSON body" });
  }
}
