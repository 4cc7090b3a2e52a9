import { AppError } from "../errors/index.js";

/** The answer to a request message that is not valid protobuf binary: 400 / INVALID_ARGUMENT. */
export function malformedMessage(cause: unknown): AppError {
  return new AppError("invalid_argument", { message: "Malformed request message", cause });
}

/**
 * Decodes a request message with the codec's serialization: binary that does not decode is the caller's
 * fault, `Malformed request message` (connect says INTERNAL); a JSON parse error is connect's own
 * INVALID_ARGUMENT.
 */
export function decodeRequest<T>(parse: (bytes: Uint8Array) => T, bytes: Uint8Array, binary: boolean): T {
  try {
    return parse(bytes);
  } catch (err) {
    if (binary) throw malformedMessage(err);
    throw err;
  }
}
