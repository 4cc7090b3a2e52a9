import type { ConnectRouterOptions, Interceptor } from "@connectrpc/connect";
import { positiveInt } from "../lib/options.js";

/** Default largest request message: 10 MiB, room for a few base64 images in a chat request. */
export const defaultBodyLimitBytes = 10 * 1024 * 1024;
/** connect's own ceiling for message sizes. */
const maxMessageBytes = 0xffffffff;
/** Default largest response message: 16 MiB. */
export const defaultWriteMaxBytes = 16 * 1024 * 1024;
/** Default largest deadline a caller may ask for: 300 s, Cloud Run's request timeout (`--timeout=300`). */
export const defaultMaxTimeoutMs = 300_000;

export interface ConnectOptionsInput {
  /**
   * Largest request message in bytes (after decompression). Larger ones are refused with
   * RESOURCE_EXHAUSTED before they are parsed. Default {@link defaultBodyLimitBytes}.
   */
  readonly bodyLimitBytes?: number;
  /** Largest response message in bytes. Default {@link defaultWriteMaxBytes}. */
  readonly writeMaxBytes?: number;
  /**
   * Largest deadline (grpc-timeout / connect-timeout-ms) a caller may set; a larger one is refused with
   * INVALID_ARGUMENT. Default {@link defaultMaxTimeoutMs}.
   */
  readonly maxTimeoutMs?: number;
  /** Interceptors in call order (outermost first); their order is decided in main.ts. */
  readonly interceptors?: readonly Interceptor[];
  /** Aborting it aborts the context signal of every running call (last step of a shutdown). */
  readonly shutdownSignal?: AbortSignal;
}

/**
 * The Connect router options, set on purpose instead of left at library defaults (which allow ~4 GiB
 * messages and unbounded deadlines):
 * - `readMaxBytes` / `writeMaxBytes` from the limits above;
 * - `maxTimeoutMs`;
 * - JSON: unknown fields are an error (README, API: never silently dropped) and responses use the proto
 *   field names, i.e. OpenAI's snake_case (`finish_reason`, not `finishReason`);
 * - `requireConnectProtocolHeader: false`, so a plain `curl -H 'content-type: application/json'` works;
 * - all three protocols (gRPC, gRPC-Web, Connect) on.
 * Throws when an option is not a positive integer, naming it.
 */
/** Router options whose limits are always set, so the paths that serve calls outside the router share them. */
export type ConnectOptions = ConnectRouterOptions &
  Required<Pick<ConnectRouterOptions, "readMaxBytes" | "writeMaxBytes" | "maxTimeoutMs">>;

export function createConnectOptions(input: ConnectOptionsInput = {}): ConnectOptions {
  const options: ConnectOptions = {
    grpc: true,
    grpcWeb: true,
    connect: true,
    readMaxBytes: positiveInt(
      "createConnectOptions",
      "bodyLimitBytes",
      input.bodyLimitBytes ?? defaultBodyLimitBytes,
      maxMessageBytes,
    ),
    writeMaxBytes: positiveInt(
      "createConnectOptions",
      "writeMaxBytes",
      input.writeMaxBytes ?? defaultWriteMaxBytes,
      maxMessageBytes,
    ),
    maxTimeoutMs: positiveInt(
      "createConnectOptions",
      "maxTimeoutMs",
      input.maxTimeoutMs ?? defaultMaxTimeoutMs,
    ),
    jsonOptions: { ignoreUnknownFields: false, useProtoFieldName: true },
    requireConnectProtocolHeader: false,
    interceptors: [...(input.interceptors ?? [])],
  };
  if (input.shutdownSignal !== undefined) options.shutdownSignal = input.shutdownSignal;
  return options;
}
