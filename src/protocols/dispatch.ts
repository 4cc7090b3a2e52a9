import type { ConnectRouter, ServiceImplSpec } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import type { Auth } from "../auth/index.js";
import { createCallPipeline, type CallPipeline } from "../call/pipeline.js";
import type { EdgeHandler, Exchange } from "../edge/exchange.js";
import { createRestHandler } from "./rest/rest-handler.js";
import { recordServices } from "../services/record-services.js";
import { type JsonChat } from "../services/chat-json.js";
import type { Logger } from "../log/index.js";
import { createConnectCodec } from "./connect/connect-codec.js";
import { createGrpcCodec } from "./grpc/grpc-codec.js";
import { createConnectDispatch } from "./fallback/connect-node-lane.js";
import type { ConnectOptions } from "./connect-options.js";

export interface DispatchOptions {
  /** From createConnectOptions: limits, interceptors (outermost first) and the shutdown signal. */
  readonly connectOptions: ConnectOptions;
  /** Registers the services, as connectNodeAdapter's option of the same name. */
  readonly routes: (router: ConnectRouter) => void;
  /**
   * The call pipeline (src/call/pipeline.ts), when the caller shares it with another surface (src/app.ts:
   * the OpenAI one). By default one is built from `connectOptions`' interceptors and shutdown signal,
   * `precheck` and `logger`.
   */
  readonly pipeline?: CallPipeline;
  readonly logger: Logger;
  /**
   * Auth's precheck for the fallback lane (connect-node's handlers), which runs it itself after the
   * size-limited read and before connect decodes. None by default.
   */
  readonly precheck?: Auth["precheck"] | undefined;
  /** The chat RPCs for REST's JSON callers (src/services/chat-json.ts); without it REST builds messages. */
  readonly chatJson?: JsonChat | undefined;
  /** Called when a codec takes a call, before it is served (the differential tests count them). */
  readonly onCodecCall?: (exchange: Exchange) => void;
}

/**
 * The innermost edge handler (docs/architecture.md, "The request path"): two lanes. The call pipeline
 * serves every call a codec takes — gRPC and gRPC-Web (src/protocols/grpc/grpc-codec.ts), Connect
 * (src/protocols/connect/connect-codec.ts), REST from google.api.http (src/protocols/rest/rest-handler.ts), which
 * also answers 404/405 for unknown paths. connect-node's handlers (src/protocols/fallback/connect-node-lane.ts) are the
 * fallback lane for the RPC requests no codec takes: Connect GET, compressed Connect unary bodies, client
 * and bidi streams (server reflection), gRPC over HTTP/1.1, gRPC-Web text, unsupported content types.
 * Both lanes serve the same implementations through the same interceptors, limits and shutdown signal.
 */
export function createDispatch(options: DispatchOptions): EdgeHandler {
  const { connectOptions, logger } = options;
  const precheck = options.precheck === undefined ? {} : { precheck: options.precheck };
  const pipeline =
    options.pipeline ??
    createCallPipeline({
      interceptors: connectOptions.interceptors ?? [],
      shutdownSignal: connectOptions.shutdownSignal,
      logger,
      ...precheck,
    });
  // Every service registered on the router is recorded for the codecs, which invoke the same
  // implementations in-process.
  const services: ServiceImplSpec[] = [];
  // connect-node's own default, named so the codecs negotiate from the same list.
  const acceptCompression = [compressionGzip, compressionBrotli];
  const fallback = createConnectDispatch({
    ...connectOptions,
    acceptCompression,
    logger,
    ...precheck,
    routes: (router) => options.routes(recordServices(router, services)),
  });
  const limits = {
    services,
    readMaxBytes: connectOptions.readMaxBytes,
    writeMaxBytes: connectOptions.writeMaxBytes,
    maxTimeoutMs: connectOptions.maxTimeoutMs,
    jsonOptions: connectOptions.jsonOptions,
    acceptCompression,
  };
  const grpc = createGrpcCodec(limits);
  // A server that requires `connect-protocol-version` leaves every Connect call to connect, which checks it.
  const connect =
    connectOptions.requireConnectProtocolHeader === true ? () => undefined : createConnectCodec(limits);
  const rest = createRestHandler({
    services,
    pipeline,
    maxBodyBytes: connectOptions.readMaxBytes,
    maxTimeoutMs: connectOptions.maxTimeoutMs,
    chatJson: options.chatJson,
  });
  return (exchange) => {
    const wire = grpc(exchange) ?? connect(exchange);
    if (wire !== undefined) {
      options.onCodecCall?.(exchange);
      void pipeline.run(exchange, wire);
      return;
    }
    if (fallback(exchange)) return;
    rest(exchange);
  };
}
