import type * as http from "node:http";
import * as http2 from "node:http2";
import {
  Code,
  ConnectError,
  type ConnectRouterOptions,
  type Interceptor,
  type ServiceImplSpec,
} from "@connectrpc/connect";
import {
  compressionNegotiate,
  createMethodSerializationLookup,
  mergeNonProtocolHeaders,
  type Compression,
  type MethodSerializationLookup,
} from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  contentTypeUnaryRegExp,
  errorToJsonBytes,
  parseTimeout,
} from "@connectrpc/connect/protocol-connect";
import type { DescMessage, Message } from "@bufbuild/protobuf";
import type { Auth } from "../auth/index.js";
import type { Exchange } from "../edge/exchange.js";
import { requestTooLarge } from "../errors/index.js";
import { checkBinaryValues, checkJsonValues } from "../lib/message-limits.js";
import { isRequestTooLarge } from "../rpc/wire-error.js";
import { createInProcessCalls } from "./in-process-call.js";
import { isConnectParseFailure, malformedMessage } from "./malformed-message.js";
import { headerValue, nodeHeaders, requestHeaders } from "./node-headers.js";
import { readBody } from "./read-body.js";

type UnarySpec = Extract<ServiceImplSpec["methods"][string], { kind: "unary" }>;

interface UnaryRoute {
  readonly spec: UnarySpec;
  readonly rpc: string;
  readonly serialization: MethodSerializationLookup<DescMessage, DescMessage>;
}

export interface ConnectUnaryOptions {
  /** The services registered on the Connect router (see recordServices); their unary methods are served. */
  readonly services: readonly ServiceImplSpec[];
  /** The router's interceptors, outermost first. */
  readonly interceptors: readonly Interceptor[];
  /** As the router's options of the same names. */
  readonly readMaxBytes: number;
  readonly writeMaxBytes: number;
  readonly maxTimeoutMs: number;
  /** As the router's (unknown fields, field names). */
  readonly jsonOptions?: ConnectRouterOptions["jsonOptions"];
  /** Response compressions, as connect-node's `acceptCompression` (gzip and br by default). */
  readonly acceptCompression: readonly Compression[];
  /** Responses at least this large are compressed when the caller accepts it (connect's default 1024). */
  readonly compressMinBytes?: number;
  /** Aborting it aborts the context signal of every running call (last step of a shutdown). */
  readonly shutdownSignal?: AbortSignal | undefined;
  /**
   * Auth's body-free checks (see `Auth.precheck`), run after the size-limited read and before the body is
   * parsed, so that no unauthenticated request costs a parse. None by default.
   */
  readonly precheck?: Auth["precheck"];
}

/**
 * Takes the request when it can serve it, and says so; the caller hands every other request on.
 * Never throws.
 */
export type ConnectUnaryHandler = (exchange: Exchange) => boolean;

const headerContentType = "content-type";
const headerEncoding = "content-encoding";
const headerAcceptEncoding = "accept-encoding";
const headerTimeout = "connect-timeout-ms";
const contentTypeJson = "application/json";
const contentTypeProto = "application/proto";
const binaryContentType = /^application\/proto$/i;
/** connect-node's limit on the unread request body it reads and drops before answering over HTTP/1.1. */
const maxDrainBytes = 256 * 1024;
/** connect-node's delay between half-closing and closing a connection whose request was left unread. */
const closeDelayMs = 500;

/**
 * Connect protocol unary calls (POST, `application/json` or `application/proto`, HTTP/1.1 and h2c) served
 * without connect-node's generic pipeline (universal request and response objects, async iterables for
 * the body and the answer, protocol negotiation), as the gRPC fast path does for gRPC
 * (docs/architecture.md, "The request path"). Same semantics as connect's Connect handler: the handler
 * context (deadline from `connect-timeout-ms`, shutdown and cancellation signals, headers, trailers sent
 * as `trailer-` headers), the interceptors, the limits, response compression, the error body and the HTTP
 * status of each code, and the server's own corrections the Connect dispatcher makes (413 `Request too
 * large`, 400 `Malformed request message`).
 *
 * Left to connect (so answered exactly as connect does): GET calls, a compressed request body
 * (`content-encoding` other than identity), a `connect-timeout-ms` connect refuses, a declared body over
 * the limit, any other content type (415), streaming and unknown methods, HTTP/1.0 without `Host`.
 */
export function createConnectUnaryHandler(options: ConnectUnaryOptions): ConnectUnaryHandler {
  const { interceptors, readMaxBytes, maxTimeoutMs } = options;
  // This mirrors connect-es 2.3.0's Connect unary handler (@connectrpc/connect/protocol-connect,
  // createUnaryHandler) and connect-node 2.3.0's universalResponseToNodeResponse;
  // test/server/connect-unary.test.ts proves it byte for byte against the server's Connect path over
  // HTTP/1.1 and h2c. Re-check both when connect-es is upgraded.
  const jsonOptions = options.jsonOptions ?? {};
  const acceptCompression = [...options.acceptCompression];
  const compressMinBytes = options.compressMinBytes ?? 1024;
  const limits = { readMaxBytes, writeMaxBytes: options.writeMaxBytes, compressMinBytes };
  const routes = new Map<string, UnaryRoute>();
  for (const service of options.services) {
    for (const spec of Object.values(service.methods)) {
      if (spec.kind !== "unary") continue;
      routes.set(`/${spec.method.parent.typeName}/${spec.method.name}`, {
        spec,
        rpc: `${spec.method.parent.typeName}/${spec.method.name}`,
        serialization: createMethodSerializationLookup(spec.method, undefined, jsonOptions, limits),
      });
    }
  }

  const calls = createInProcessCalls({ interceptors, shutdownSignal: options.shutdownSignal });

  return function connectUnary(exchange) {
    if (exchange.method !== "POST") return false;
    const route = routes.get(exchange.path);
    if (route === undefined) return false;
    const { req } = exchange;
    const headers = req.headers;
    const contentType = headers["content-type"];
    if (contentType === undefined || !contentTypeUnaryRegExp.test(contentType)) return false;
    const encoding = headers[headerEncoding];
    if (encoding !== undefined && encoding !== "identity") return false;
    const declared = headers["content-length"];
    if (declared !== undefined && Number(declared) > readMaxBytes) return false;
    const timeout = parseTimeout(headerValue(headers[headerTimeout]) ?? null, maxTimeoutMs);
    if (timeout.error !== undefined) return false;
    const authority = "authority" in req ? req.authority : headers.host;
    if (authority === undefined) return false;
    exchange.protocol = "connect";
    exchange.rpc = route.rpc;
    const binary = binaryContentType.test(contentType);
    serve(route, exchange, binary, `http://${authority}${exchange.req.url ?? ""}`, timeout.timeoutMs).catch(
      () => {
        // serve() answers every failure itself; a throw here means the response is already gone.
        if (!exchange.res.writableEnded) exchange.res.destroy();
      },
    );
    return true;
  };

  async function serve(
    route: UnaryRoute,
    exchange: Exchange,
    binary: boolean,
    url: string,
    timeoutMs: number | undefined,
  ): Promise<void> {
    const { req, res } = exchange;
    const { spec, serialization } = route;
    const header = requestHeaders(req.headers);
    const call = calls.open(exchange, spec, {
      protocolName: "connect",
      url,
      requestHeader: header,
      responseHeader: { [headerContentType]: binary ? contentTypeProto : contentTypeJson },
      timeoutMs,
    });
    const { context } = call;
    const compression = compressionNegotiate(
      acceptCompression,
      null,
      header.get(headerAcceptEncoding),
      headerAcceptEncoding,
    );

    let status = 200;
    let body: Uint8Array;
    try {
      const bytes = await readUnaryBody(req, readMaxBytes);
      // Read (size-limited) but not parsed: authentication (an HMAC signature over the body as sent
      // included, docs/auth.md) comes first, so no unauthenticated request costs a decode.
      await options.precheck?.({
        service: spec.method.parent.typeName,
        method: spec.method.name,
        headers: header,
        rawHeaders: req.rawHeaders,
        exchange,
        signed: { method: "POST", path: `/${spec.method.parent.typeName}/${spec.method.name}`, query: "" },
        body: () => bytes,
      });
      // Authenticated: the decode is bounded (src/lib/message-limits.ts) before it starts.
      if (binary) checkBinaryValues(spec.method.input, bytes);
      else checkJsonValues(bytes);
      let request: Message;
      try {
        request = serialization.getI(binary).parse(bytes);
      } catch (err) {
        // connect answers undecodable binary with INTERNAL; the Connect dispatcher makes it a 400.
        if (err instanceof ConnectError && isConnectParseFailure(err.code, err.rawMessage)) {
          throw malformedMessage(err);
        }
        throw err;
      }
      const message = await call.unary(request);
      body = serialization.getO(binary).serialize(message);
    } catch (thrown) {
      const err = call.fail(thrown);
      // connect sends 429 for RESOURCE_EXHAUSTED; a body over the limit is 413 on this server.
      status = isRequestTooLarge(err) ? 413 : codeToHttpStatus(err.code);
      context.responseHeader.set(headerContentType, contentTypeJson);
      if (!err.isWireError) mergeNonProtocolHeaders(context.responseHeader, err.metadata);
      body = errorToJsonBytes(err, jsonOptions);
    }
    if (compression.response !== null && body.byteLength >= compressMinBytes) {
      body = await compression.response.compress(body);
      context.responseHeader.set(headerEncoding, compression.response.name);
    }
    // connect's trailerMux, without its copy of the headers: trailers go out as `trailer-` headers.
    const out = nodeHeaders(context.responseHeader);
    context.responseTrailer.forEach((value, name) => {
      const key = `trailer-${name}`;
      const seen = out[key];
      out[key] =
        seen === undefined ? value : `${typeof seen === "string" ? seen : seen.join(", ")}, ${value}`;
    });
    out["content-length"] = String(body.byteLength);
    if ("stream" in res) {
      if (res.writableEnded || res.stream.destroyed) return;
      if (!req.readableEnded) stopUploadAfterAnswer(res.stream);
    } else {
      if (res.writableEnded || res.destroyed) return;
      if (!(req as http.IncomingMessage).complete) {
        await settleUnreadBody(req as http.IncomingMessage, res, out);
      }
    }
    res.writeHead(status, out);
    res.end(body);
  }
}

/** The body of a unary call, up to the limit; a larger one fails with `Request too large` (413). */
function readUnaryBody(req: Exchange["req"], readMaxBytes: number): Promise<Buffer> {
  return readBody(
    req,
    (_chunk, total) => {
      if (total <= readMaxBytes) return undefined;
      // What is left unread is drained or refused when the answer goes out (see serve()).
      req.pause();
      return requestTooLarge(readMaxBytes);
    },
    () => new ConnectError("the request body ended early", Code.Canceled),
  );
}

/**
 * HTTP/2, an answer before the whole body was read: as connect-node, the stream is closed with NO_ERROR
 * once the answer is out, so the client stops sending (src/server/one-port.ts lets the answer reach the
 * client first).
 */
function stopUploadAfterAnswer(stream: http2.ServerHttp2Stream): void {
  stream.once("wantTrailers", () => {
    setImmediate(() => {
      if (stream.state.remoteClose === 0) stream.close(http2.constants.NGHTTP2_NO_ERROR);
    });
  });
}

/**
 * HTTP/1.1, an answer before the whole body was read: as connect-node, up to 256 KiB more are read and
 * dropped so the connection stays usable; a body still unfinished closes the connection after the
 * answer (half-close first, so the client's TCP stack does not drop the answer).
 */
async function settleUnreadBody(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  headers: Record<string, string | string[]>,
): Promise<void> {
  const connection = headers["connection"];
  if (!res.shouldKeepAlive || (typeof connection === "string" && connection.toLowerCase() === "close")) {
    return;
  }
  let drained = 0;
  let failed = false;
  try {
    for await (const chunk of req.iterator({ destroyOnReturn: false })) {
      drained += (chunk as Buffer).byteLength;
      if (drained > maxDrainBytes) break;
    }
  } catch {
    failed = true;
  }
  const socket = res.socket;
  if (req.complete || socket === null) return;
  headers["connection"] = "close";
  if (failed) return;
  socket.destroySoon = () => {
    socket.end(() => setTimeout(() => socket.destroy(), closeDelayMs).unref());
  };
}
