import type { IncomingHttpHeaders } from "node:http";
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { NodeServerRequest } from "../edge/exchange.js";
import { AppError } from "../errors/index.js";
import { headerValue } from "../compat/node-headers.js";

// The request body of the HTTP surfaces (the REST transcoder and the OpenAI-compatible one), read by the
// call pipeline (src/call/read-body.ts), parsed as JSON here.

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** `application/json` with no content coding; AppError `unsupported_media_type` (415) otherwise. */
export function checkJsonContentType(headers: IncomingHttpHeaders): void {
  const mime = headerValue(headers["content-type"])?.split(";")[0]?.trim().toLowerCase();
  const encoding = headerValue(headers["content-encoding"]);
  if (mime !== "application/json" || (encoding !== undefined && encoding !== "identity")) {
    throw new AppError("unsupported_media_type");
  }
}

/** Valid UTF-8 JSON, parsed; AppError `invalid_argument` `Malformed JSON body` otherwise. */
export function parseJsonBytes(body: Uint8Array): JsonValue {
  try {
    return JSON.parse(utf8.decode(body)) as JsonValue;
  } catch {
    throw new AppError("invalid_argument", { message: "Malformed JSON body" });
  }
}

/** Parses a non-empty body as JSON: its content type checked (`checkJsonContentType`), then its bytes. */
export function parseJsonBody(req: NodeServerRequest, body: Uint8Array): JsonValue {
  checkJsonContentType(req.headers);
  return parseJsonBytes(body);
}

/** `parseJsonBody`, and the value must be an object (`Request body must be a JSON object`). */
export function parseJsonObjectBody(req: NodeServerRequest, body: Uint8Array): JsonObject {
  const json = parseJsonBody(req, body);
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new AppError("invalid_argument", { message: "Request body must be a JSON object" });
  }
  return json;
}
