import type { ConnectRouter, ServiceImplSpec } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import type { Auth } from "../auth/index.js";
import type { EdgeHandler } from "../edge/exchange.js";
import { createRestHandler, recordServices, type JsonChat } from "../http/index.js";
import type { Logger } from "../log/index.js";
import { createConnectDispatch } from "./connect-dispatch.js";
import { createConnectUnaryHandler } from "./connect-unary.js";
import type { ConnectOptions } from "./connect-options.js";
import { createGrpcUnaryHandler } from "./grpc-unary.js";

export interface DispatchOptions {
  /** From createConnectOptions: limits, interceptors (outermost first) and the shutdown signal. */
  readonly connectOptions: ConnectOptions;
  /** Registers the services, as connectNodeAdapter's option of the same name. */
  readonly routes: (router: ConnectRouter) => void;
  readonly logger: Logger;
  /**
   * Auth's body-free checks (see `Auth.precheck`), run by every path after the size-limited read and
   * before the body is parsed, so that no unauthenticated request costs a parse. None by default.
   */
  readonly precheck?: Auth["precheck"];
  /** The chat RPCs for REST's JSON callers (src/http/chat-json.ts); without it REST builds messages. */
  readonly chatJson?: JsonChat | undefined;
}

/**
 * The innermost edge handler (docs/architecture.md, "The request path"): unary binary gRPC over HTTP/2
 * and Connect unary POST calls take their fast paths, the Connect router takes its other RPC requests, the REST transcoder takes the rest (and
 * answers 404 for unknown paths). All of them serve the same service implementations through the same
 * interceptors, limits and shutdown signal. The server (src/app.ts) and the tests' servers are built with it.
 */
export function createDispatch(options: DispatchOptions): EdgeHandler {
  const { connectOptions, logger } = options;
  const interceptors = connectOptions.interceptors ?? [];
  const shutdown =
    connectOptions.shutdownSignal === undefined ? {} : { shutdownSignal: connectOptions.shutdownSignal };
  const precheck = options.precheck === undefined ? {} : { precheck: options.precheck };
  // Every service registered on the router is recorded for the REST transcoder and the fast path, which
  // invoke the same implementations in-process.
  const services: ServiceImplSpec[] = [];
  // connect-node's own default, named so the gRPC fast path negotiates from the same list.
  const acceptCompression = [compressionGzip, compressionBrotli];
  const connect = createConnectDispatch({
    ...connectOptions,
    acceptCompression,
    logger,
    ...precheck,
    routes: (router) => options.routes(recordServices(router, services)),
  });
  const rest = createRestHandler({
    services,
    interceptors,
    maxBodyBytes: connectOptions.readMaxBytes,
    maxTimeoutMs: connectOptions.maxTimeoutMs,
    ...shutdown,
    logger,
    ...precheck,
    chatJson: options.chatJson,
  });
  const grpcUnary = createGrpcUnaryHandler({
    services,
    interceptors,
    readMaxBytes: connectOptions.readMaxBytes,
    writeMaxBytes: connectOptions.writeMaxBytes,
    maxTimeoutMs: connectOptions.maxTimeoutMs,
    acceptCompression,
    ...shutdown,
    ...precheck,
  });
  // A server that requires `connect-protocol-version` leaves every Connect call to connect, which checks it.
  const connectUnary =
    connectOptions.requireConnectProtocolHeader === true
      ? () => false
      : createConnectUnaryHandler({
          services,
          interceptors,
          readMaxBytes: connectOptions.readMaxBytes,
          writeMaxBytes: connectOptions.writeMaxBytes,
          maxTimeoutMs: connectOptions.maxTimeoutMs,
          jsonOptions: connectOptions.jsonOptions,
          acceptCompression,
          ...shutdown,
          ...precheck,
        });
  return (exchange) => {
    if (grpcUnary(exchange) || connectUnary(exchange) || connect(exchange)) return;
    rest(exchange);
  };
}
