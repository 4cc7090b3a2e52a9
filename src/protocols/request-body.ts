import type { JsonValue } from "@bufbuild/protobuf";
import type { NodeServerRequest } from "../edge/exchange.js";
import { AppError } from "../errors/index.js";
import { headerValue } from "../compat/node-headers.js";

// The request body of the HTTP surfaces (the REST transcoder and the OpenAI-compatible one), read by the
// call pipeline (src/call/read-body.ts), parsed as JSON here.

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Parses a non-empty body as JSON: `application/json` with no content coding (AppError
 * `unsupported_media_type`, 415, otherwise), valid UTF-8 JSON (`invalid_argument` `Malformed JSON body`
 * otherwise).
 */
export function parseJsonBody(req: NodeServerRequest, body: Uint8Array): JsonValue {
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
