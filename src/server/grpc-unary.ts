import type * as http2 from "node:http2";
import { Code, ConnectError, type Interceptor, type ServiceImplSpec } from "@connectrpc/connect";
import {
  compressionNegotiate,
  createMethodSerializationLookup,
  type Compression,
  type Serialization,
} from "@connectrpc/connect/protocol";
import { parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import type { Message } from "@bufbuild/protobuf";
import type { Auth } from "../auth/index.js";
import type { Exchange } from "../edge/exchange.js";
import { checkBinaryValues } from "../lib/message-limits.js";
import { toSpecEncoding } from "./grpc-message.js";
import { createInProcessCalls } from "./in-process-call.js";
import { malformedMessage } from "./malformed-message.js";
import { nodeHeaders, requestHeaders } from "./node-headers.js";
import { readBody } from "./read-body.js";

type UnarySpec = Extract<ServiceImplSpec["methods"][string], { kind: "unary" }>;

interface UnaryRoute {
  readonly spec: UnarySpec;
  readonly input: Serialization<Message>;
  readonly output: Serialization<Message>;
}

export interface GrpcUnaryOptions {
  /** The services registered on the Connect router (see recordServices); their unary methods are served. */
  readonly services: readonly ServiceImplSpec[];
  /** The router's interceptors, outermost first. */
  readonly interceptors: readonly Interceptor[];
  /** As the router's options of the same names. */
  readonly readMaxBytes: number;
  readonly writeMaxBytes: number;
  readonly maxTimeoutMs: number;
  /** Request and response compressions, as connect-node's `acceptCompression` (gzip and br by default). */
  readonly acceptCompression: readonly Compression[];
  /** Responses at least this large are compressed when the caller accepts it (connect's default 1024). */
  readonly compressMinBytes?: number;
  /** Aborting it aborts the context signal of every running call (last step of a shutdown). */
  readonly shutdownSignal?: AbortSignal;
  /**
   * Auth's body-free checks (see `Auth.precheck`), run before the request body is parsed, so that no
   * unauthenticated request costs a parse. None by default.
   */
  readonly precheck?: Auth["precheck"];
}

/**
 * Takes the request when it can serve it, and says so; the caller hands every other request on.
 * Never throws.
 */
export type GrpcUnaryHandler = (exchange: Exchange) => boolean;

const contentTypeProto = "application/grpc+proto";
const headerEncoding = "grpc-encoding";
const headerAcceptEncoding = "grpc-accept-encoding";
/** gRPC binary content types (`application/grpc+json` stays with connect). */
const binaryContentType = /^application\/grpc(?:\+proto)?$/i;
const compressedFlag = 0b0000_0001;

/**
 * Unary gRPC (binary) over HTTP/2, served without connect-node's streaming pipeline, which costs several
 * times more per call than the call itself (async generators for body, envelope, compression,
 * serialization and the response). It keeps connect's semantics: the same handler context (deadline from
 * `grpc-timeout`, shutdown and cancellation signals, headers and trailers), the same interceptors, the same
 * limits and error texts for framing faults (raised before the interceptors run, as in connect), the same
 * compression negotiation, and the same trailers (`grpc-status`, `grpc-message` with the gRPC spec's
 * encoding, `grpc-status-details-bin`). Anything else (gRPC-Web, `application/grpc+json`, streaming methods,
 * HTTP/1.1, another method than POST) is not taken.
 */
export function createGrpcUnaryHandler(options: GrpcUnaryOptions): GrpcUnaryHandler {
  const { interceptors, readMaxBytes } = options;
  // The framing below (envelopes, limits, error texts, compression, trailers) mirrors connect-es 2.3.0's
  // gRPC handler (@connectrpc/connect/protocol-grpc); test/server/grpc-unary.test.ts proves it byte for
  // byte against the server's Connect path. Re-check both when connect-es is upgraded.
  const acceptCompression = [...options.acceptCompression];
  const compressMinBytes = options.compressMinBytes ?? 1024;
  const limits = { readMaxBytes, writeMaxBytes: options.writeMaxBytes, compressMinBytes };
  const routes = new Map<string, UnaryRoute>();
  for (const service of options.services) {
    for (const spec of Object.values(service.methods)) {
      if (spec.kind !== "unary") continue;
      const lookup = createMethodSerializationLookup(spec.method, undefined, undefined, limits);
      routes.set(`/${spec.method.parent.typeName}/${spec.method.name}`, {
        spec,
        input: lookup.getI(true),
        output: lookup.getO(true),
      });
    }
  }

  const calls = createInProcessCalls({ interceptors, shutdownSignal: options.shutdownSignal });

  return function grpcUnary(exchange) {
    if (exchange.method !== "POST" || exchange.protocol !== "grpc" || exchange.httpVersion !== "2") {
      return false;
    }
    const req = exchange.req as http2.Http2ServerRequest;
    const res = exchange.res as http2.Http2ServerResponse;
    const contentType = req.headers["content-type"];
    if (contentType === undefined || !binaryContentType.test(contentType)) return false;
    const route = routes.get(req.url);
    if (route === undefined) return false;
    const { spec } = route;
    exchange.rpc = `${spec.method.parent.typeName}/${spec.method.name}`;
    serve(route, exchange, req, res).catch(() => {
      // serve() answers every failure itself; a throw here means the stream is already gone.
      if (!res.writableEnded) res.stream.close();
    });
    return true;
  };

  async function serve(
    route: UnaryRoute,
    exchange: Exchange,
    req: http2.Http2ServerRequest,
    res: http2.Http2ServerResponse,
  ): Promise<void> {
    const header = requestHeaders(req.headers);
    const timeout = parseTimeout(header.get("grpc-timeout"), options.maxTimeoutMs);
    const { spec } = route;
    const call = calls.open(exchange, spec, {
      protocolName: "grpc",
      url: `http://${req.authority}${req.url}`,
      requestHeader: header,
      responseHeader: { "content-type": contentTypeProto },
      responseTrailer: { "grpc-status": "0" },
      timeoutMs: timeout.timeoutMs,
    });
    const { context } = call;
    const compression = compressionNegotiate(
      acceptCompression,
      header.get(headerEncoding),
      header.get(headerAcceptEncoding),
      headerAcceptEncoding,
    );
    if (compression.response) context.responseHeader.set(headerEncoding, compression.response.name);

    let body: Uint8Array | undefined;
    try {
      // Refusals before the call, in connect's order: compression, deadline, framing, parsing.
      if (compression.error) throw compression.error;
      if (timeout.error) throw timeout.error;
      const input = await readUnaryEnvelope(req, readMaxBytes);
      let bytes: Uint8Array | undefined;
      const messageBytes = async (): Promise<Uint8Array> =>
        (bytes ??=
          (input.flags & compressedFlag) === 0
            ? input.data
            : await decompress(compression.request, input.data, readMaxBytes));
      // Read (size-limited) but not decoded: authentication (an HMAC signature over the message bytes
      // included) comes first, so no unauthenticated request costs a decode.
      await options.precheck?.({
        service: spec.method.parent.typeName,
        method: spec.method.name,
        headers: header,
        rawHeaders: req.rawHeaders,
        exchange,
        signed: { method: "POST", path: `/${spec.method.parent.typeName}/${spec.method.name}`, query: "" },
        body: messageBytes,
      });
      const decompressed = await messageBytes();
      // Authenticated: the decode is bounded (src/lib/message-limits.ts) before it starts.
      checkBinaryValues(spec.method.input, decompressed);
      let request: Message;
      try {
        request = route.input.parse(decompressed);
      } catch (err) {
        throw malformedMessage(err);
      }
      const message = await call.unary(request);
      body = await envelope(route.output.serialize(message), compression.response, compressMinBytes);
    } catch (thrown) {
      const err = call.fail(thrown);
      setTrailerStatus(context.responseTrailer, err);
      const message = context.responseTrailer.get("grpc-message");
      if (message !== null) context.responseTrailer.set("grpc-message", toSpecEncoding(message));
    }
    if (res.writableEnded || res.stream.destroyed) return;
    res.writeHead(200, nodeHeaders(context.responseHeader));
    res.addTrailers(nodeHeaders(context.responseTrailer));
    if (body === undefined) res.end();
    else res.end(body);
  }
}

/**
 * Reads the body of a unary call: exactly one enveloped message. The errors are connect's, word for word,
 * so a caller sees the same whichever path served it.
 */
async function readUnaryEnvelope(
  req: http2.Http2ServerRequest,
  readMaxBytes: number,
): Promise<{ flags: number; data: Uint8Array }> {
  let declared = -1;
  const all = await readBody(
    req,
    (chunk, total, chunks) => {
      if (declared < 0 && total >= 5) {
        const head = chunks.length === 1 ? chunk : Buffer.concat(chunks, total);
        declared = head.readUInt32BE(1);
        if (declared > readMaxBytes) {
          return new ConnectError(
            `message size ${declared} is larger than configured readMaxBytes ${readMaxBytes}`,
            Code.ResourceExhausted,
          );
        }
      }
      // More bytes than one message and the header of a second one: connect reads no further either.
      if (declared >= 0 && total > 5 + declared + readMaxBytes + 5) return extraMessage();
      return undefined;
    },
    () => new ConnectError("the request body ended early", Code.Canceled),
  );
  const total = all.length;
  if (total === 0) {
    throw new ConnectError("protocol error: missing input message for unary method", Code.Unimplemented);
  }
  if (total < 5 || total < 5 + declared) {
    throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  }
  const end = 5 + declared;
  if (total > end) {
    const rest = all.subarray(end);
    const complete = rest.length >= 5 && rest.length >= 5 + rest.readUInt32BE(1);
    throw complete
      ? extraMessage()
      : new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  }
  return { flags: all[0] as number, data: all.subarray(5, end) };
}

function extraMessage(): ConnectError {
  return new ConnectError(
    "protocol error: received extra input message for unary method",
    Code.Unimplemented,
  );
}

async function decompress(
  compression: Compression | null,
  data: Uint8Array,
  readMaxBytes: number,
): Promise<Uint8Array> {
  if (compression === null) {
    throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
  }
  return compression.decompress(data, readMaxBytes);
}

/** One gRPC envelope (flag byte, big-endian length, message), compressed when worth it and accepted. */
async function envelope(
  message: Uint8Array,
  compression: Compression | null,
  compressMinBytes: number,
): Promise<Buffer> {
  let flags = 0;
  let data = message;
  if (compression !== null && message.byteLength >= compressMinBytes) {
    data = await compression.compress(message);
    flags = compressedFlag;
  }
  const out = Buffer.allocUnsafe(5 + data.byteLength);
  out[0] = flags;
  out.writeUInt32BE(data.byteLength, 1);
  out.set(data, 5);
  return out;
}
