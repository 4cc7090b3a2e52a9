import { AppError } from "../errors/index.js";

/** The answer to a request message that is not valid protobuf binary: 400 / INVALID_ARGUMENT. */
export function malformedMessage(cause: unknown): AppError {
  return new AppError("invalid_argument", { message: "Malformed request message", cause });
}
