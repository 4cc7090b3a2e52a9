import type { JsonValue } from "@bufbuild/protobuf";
import type { NodeServerRequest } from "../edge/exchange.js";
import { AppError } from "../errors/index.js";
import { readBody } from "../server/read-body.js";

// The request body of the HTTP surfaces (the REST transcoder and the OpenAI-compatible one): read whole up
// to the body limit, then parsed as JSON (docs/architecture.md, "Layers and what each owns").

export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(", ") : value;
}

const bodyTooLarge = new Error("request body over the limit");
const bodyClosed = (): Error => new Error("the request body ended early");

/**
 * Reads the whole body; throws AppError `request_too_large` when it is larger than `maxBytes` (declared
 * or sent), leaving the rest unread (the caller's 413 then closes an HTTP/1.1 connection).
 */
export async function readRequestBody(req: NodeServerRequest, maxBytes: number): Promise<Buffer> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > maxBytes) throw new AppError("request_too_large");
  try {
    return await readBody(req, (_chunk, total) => (total > maxBytes ? bodyTooLarge : undefined), bodyClosed);
  } catch (err) {
    if (err !== bodyTooLarge) throw err;
    req.pause();
    throw new AppError("request_too_large");
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
  try {
    return JSON.parse(utf8.decode(body)) as JsonValue;
  } catch {
    throw new AppError("invalid_argument", { message: "Malformed JSON body" });
  }
}
