import { Code, type ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { errorDomain, httpStatusOf, isAppErrorCode } from "./app-error.js";

/** The canonical gRPC → HTTP mapping (google/rpc/code.proto) and each code's name as REST bodies spell it. */
export const codeTable = {
  [Code.Canceled]: { http: 499, name: "CANCELLED" },
  [Code.Unknown]: { http: 500, name: "UNKNOWN" },
  [Code.InvalidArgument]: { http: 400, name: "INVALID_ARGUMENT" },
  [Code.DeadlineExceeded]: { http: 504, name: "DEADLINE_EXCEEDED" },
  [Code.NotFound]: { http: 404, name: "NOT_FOUND" },
  [Code.AlreadyExists]: { http: 409, name: "ALREADY_EXISTS" },
  [Code.PermissionDenied]: { http: 403, name: "PERMISSION_DENIED" },
  [Code.ResourceExhausted]: { http: 429, name: "RESOURCE_EXHAUSTED" },
  [Code.FailedPrecondition]: { http: 400, name: "FAILED_PRECONDITION" },
  [Code.Aborted]: { http: 409, name: "ABORTED" },
  [Code.OutOfRange]: { http: 400, name: "OUT_OF_RANGE" },
  [Code.Unimplemented]: { http: 501, name: "UNIMPLEMENTED" },
  [Code.Internal]: { http: 500, name: "INTERNAL" },
  [Code.Unavailable]: { http: 503, name: "UNAVAILABLE" },
  [Code.DataLoss]: { http: 500, name: "DATA_LOSS" },
  [Code.Unauthenticated]: { http: 401, name: "UNAUTHENTICATED" },
} as const satisfies Record<Code, { http: number; name: string }>;

/**
 * The HTTP status of a ConnectError: our own ErrorInfo reason (an AppErrorCode) picks the error table's status (502
 * versus 503 for the same UNAVAILABLE, 413 for RESOURCE_EXHAUSTED "Request too large"); anything else goes
 * by the canonical gRPC table.
 */
export function httpStatusOfError(error: ConnectError): number {
  for (const info of error.findDetails(ErrorInfoSchema)) {
    if (info.domain === errorDomain && isAppErrorCode(info.reason)) return httpStatusOf(info.reason);
  }
  return codeTable[error.code].http;
}
