import { Code } from "@connectrpc/connect";
import { AppError } from "../errors/index.js";

/**
 * connect-es reports a request message it cannot decode from protobuf binary as INTERNAL with this text
 * (`createBinarySerialization` in @connectrpc/connect). That is the caller's fault, not the server's: a
 * free, invisible 5xx for anyone who sends garbage (issue 18). Both dispatch paths turn it into
 * {@link malformedMessage}.
 */
const connectParseBinary = "parse binary: ";

/** Whether a status and message are connect's own answer to an undecodable binary request message. */
export function isConnectParseFailure(code: number, message: string): boolean {
  return code === (Code.Internal as number) && message.startsWith(connectParseBinary);
}

/** The answer to a request message that is not valid protobuf binary: 400 / INVALID_ARGUMENT. */
export function malformedMessage(cause: unknown): AppError {
  return new AppError("invalid_argument", { message: "Malformed request message", cause });
}
