import type * as http from "node:http";
import type { DescMessage, Message } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouterOptions, type ServiceImplSpec } from "@connectrpc/connect";
import {
  compressionNegotiate,
  createMethodSerializationLookup,
  mergeNonProtocolHeaders,
  type Compression,
  type MethodSerializationLookup,
} from "@connectrpc/connect/protocol";
import {
  contentTypeUnaryRegExp,
  endStreamFlag,
  endStreamToJson,
  errorToJsonBytes,
  parseTimeout,
} from "@connectrpc/connect/protocol-connect";
import type { InProcessCall } from "../../call/in-process-call.js";
import type { CallWire, MethodSpec } from "../../call/pipeline.js";
import { readBody } from "../../call/read-body.js";
import type { Exchange } from "../../edge/exchange.js";
import { connectHttpStatusOf, requestTooLarge } from "../../errors/index.js";
import { decodeRequest } from "../malformed-message.js";
import { nodeHeaders, requestHeaders } from "../../compat/node-headers.js";
import { settleUnreadBody, stopUploadAfterAnswer } from "../../compat/connect-node.js";
import { compressedFlag, decompress, envelope, readSingleEnvelope, writeStream } from "../envelope.js";

// The Connect codec of the call pipeline (docs/architecture.md, "The call pipeline"): unary POST calls
// (`application/json`, `application/proto`) and server streams (`application/connect+json`,
// `application/connect+proto`), over HTTP/1.1 and h2c. It mirrors connect-es 2.3.0's Connect handlers
// (@connectrpc/connect/protocol-connect) and connect-node 2.3.0's response writer;
// test/server/connect-unary.test.ts and test/server/stream-codecs.test.ts compare it byte for byte with
// connect-node's answers. Re-check both when connect-es is upgraded.

interface Route {
  readonly spec: MethodSpec;
  readonly rpc: string;
  readonly serialization: MethodSerializationLookup<DescMessage, DescMessage>;
}

export interface ConnectCodecOptions {
  /** The services registered on the router (see recordServices); their unary and server-streaming methods. */
  readonly services: readonly ServiceImplSpec[];
  /** As the router's options of the same names. */
  readonly readMaxBytes: number;
  readonly writeMaxBytes: number;
  readonly maxTimeoutMs: number;
  /** As the router's (unknown fields, field names). */
  readonly jsonOptions?: ConnectRouterOptions["jsonOptions"];
  /** Request and response compressions, as connect-node's `acceptCompression`. */
  readonly acceptCompression: readonly Compression[];
  /** Responses at least this large are compressed when the caller accepts it (connect's default 1024). */
  readonly compressMinBytes?: number;
}

/** Takes a Connect call it serves and says how (a CallWire); undefined for any other request. */
export type ConnectCodec = (exchange: Exchange) => CallWire | undefined;

const headerContentType = "content-type";
const headerEncoding = "content-encoding";
const headerAcceptEncoding = "accept-encoding";
const headerStreamEncoding = "connect-content-encoding";
const headerStreamAcceptEncoding = "connect-accept-encoding";
const headerTimeout = "connect-timeout-ms";
const contentTypeJson = "application/json";
const contentTypeProto = "application/proto";
const binaryContentType = /^application\/proto$/i;
const streamContentType = /^application\/connect\+(proto|json)(?:;|$)/i;
const encoder = new TextEncoder();

/**
 * Creates the Connect codec. Left to the fallback lane (so answered exactly as connect does): GET calls,
 * a unary body declared over the limit (413 before any read), other content types (415), client and bidi
 * streams, unknown methods, HTTP/1.0 without `Host`.
 */
export function createConnectCodec(options: ConnectCodecOptions): ConnectCodec {
  const { readMaxBytes, maxTimeoutMs } = options;
  const jsonOptions = options.jsonOptions ?? {};
  const acceptCompression = [...options.acceptCompression];
  const compressMinBytes = options.compressMinBytes ?? 1024;
  const limits = { readMaxBytes, writeMaxBytes: options.writeMaxBytes, compressMinBytes };
  const unaryRoutes = new Map<string, Route>();
  const streamRoutes = new Map<string, Route>();
  for (const service of options.services) {
    for (const spec of Object.values(service.methods)) {
      if (spec.kind !== "unary" && spec.kind !== "server_streaming") continue;
      const routes = spec.kind === "unary" ? unaryRoutes : streamRoutes;
      routes.set(`/${spec.method.parent.typeName}/${spec.method.name}`, {
        spec,
        rpc: `${spec.method.parent.typeName}/${spec.method.name}`,
        serialization: createMethodSerializationLookup(spec.method, undefined, jsonOptions, limits),
      });
    }
  }

  return function connectCodec(exchange) {
    if (exchange.method !== "POST") return undefined;
    const { req } = exchange;
    const headers = req.headers;
    const contentType = headers["content-type"];
    if (contentType === undefined) return undefined;
    const authority = "authority" in req ? req.authority : headers.host;
    if (authority === undefined) return undefined;
    const url = `http://${authority}${req.url ?? ""}`;
    const stream = streamContentType.exec(contentType);
    if (stream !== null) {
      const route = streamRoutes.get(exchange.path);
      if (route === undefined) return undefined;
      exchange.protocol = "connect";
      exchange.rpc = route.rpc;
      return streamWire(exchange, route, (stream[1] as string).toLowerCase() === "proto", url);
    }
    const route = unaryRoutes.get(exchange.path);
    if (route === undefined) return undefined;
    if (!contentTypeUnaryRegExp.test(contentType)) return undefined;
    const declared = headers["content-length"];
    if (declared !== undefined && Number(declared) > readMaxBytes) return undefined;
    exchange.protocol = "connect";
    exchange.rpc = route.rpc;
    return unaryWire(exchange, route, binaryContentType.test(contentType), url);
  };

  function unaryWire(exchange: Exchange, route: Route, binary: boolean, url: string): CallWire {
    const { spec, serialization } = route;
    const header = requestHeaders(exchange.req.headers);
    const timeout = parseTimeout(header.get(headerTimeout), maxTimeoutMs);
    const compression = compressionNegotiate(
      acceptCompression,
      header.get(headerEncoding),
      header.get(headerAcceptEncoding),
      headerAcceptEncoding,
    );
    const answer = async (call: InProcessCall, status: number, data: Uint8Array): Promise<void> => {
      const { req, res } = exchange;
      const { context } = call;
      let body = data;
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
    };
    const error = async (call: InProcessCall, err: ConnectError): Promise<void> => {
      if (exchange.res.headersSent) {
        if (!exchange.res.writableEnded) exchange.res.destroy();
        return;
      }
      const { context } = call;
      const status = connectHttpStatusOf(err);
      context.responseHeader.set(headerContentType, contentTypeJson);
      if (!err.isWireError) mergeNonProtocolHeaders(context.responseHeader, err.metadata);
      await answer(call, status, errorToJsonBytes(err, jsonOptions));
    };
    return {
      name: "Connect codec",
      spec,
      init: {
        protocolName: "connect",
        url,
        requestHeader: header,
        responseHeader: { [headerContentType]: binary ? contentTypeProto : contentTypeJson },
        timeoutMs: timeout.timeoutMs,
      },
      // Refusals before the body, in connect's order: compression, then the deadline.
      refusal: compression.error ?? timeout.error,
      signed: { method: "POST", path: `/${spec.method.parent.typeName}/${spec.method.name}`, query: "" },
      format: binary ? "binary" : "json",
      read: () => readUnaryBody(exchange.req, readMaxBytes),
      // The message as sent, content coding removed: what the signature covers (docs/auth.md).
      message: (body) =>
        compression.request === null ? body : decompress(compression.request, body, readMaxBytes),
      decode: (bytes) => ({
        request: decodeRequest((b) => serialization.getI(binary).parse(b), bytes, binary),
      }),
      async unary(call, message) {
        let body: Uint8Array;
        try {
          body = serialization.getO(binary).serialize(message as Message);
        } catch (thrown) {
          await error(call, call.fail(thrown));
          return;
        }
        await answer(call, 200, body);
      },
      stream: () => Promise.reject(new Error("a unary Connect wire has no stream")),
      error,
    };
  }

  function streamWire(exchange: Exchange, route: Route, binary: boolean, url: string): CallWire {
    const { spec, serialization } = route;
    const header = requestHeaders(exchange.req.headers);
    const timeout = parseTimeout(header.get(headerTimeout), maxTimeoutMs);
    const compression = compressionNegotiate(
      acceptCompression,
      header.get(headerStreamEncoding),
      header.get(headerStreamAcceptEncoding),
      headerStreamAcceptEncoding,
    );
    const responseHeader: Record<string, string> = {
      [headerContentType]: binary ? "application/connect+proto" : "application/connect+json",
    };
    if (compression.response) responseHeader[headerStreamEncoding] = compression.response.name;
    let flags = 0;
    /** Ends the stream: the end-of-stream frame with the trailers as metadata and the error, if any. */
    const end = async (call: InProcessCall, err: ConnectError | undefined): Promise<void> => {
      const { res } = exchange;
      if (res.writableEnded || res.destroyed) return;
      if (!res.headersSent) res.writeHead(200, nodeHeaders(call.context.responseHeader));
      let frame: Uint8Array;
      try {
        const json = endStreamToJson(call.context.responseTrailer, err, jsonOptions);
        frame = await envelope(
          encoder.encode(JSON.stringify(json)),
          compression.response,
          compressMinBytes,
          endStreamFlag,
        );
      } catch {
        res.destroy();
        return;
      }
      res.end(frame);
    };
    return {
      name: "Connect codec",
      spec,
      init: {
        protocolName: "connect",
        url,
        requestHeader: header,
        responseHeader,
        timeoutMs: timeout.timeoutMs,
      },
      // Refusals before the body, in connect's order: compression, then the deadline.
      refusal: compression.error ?? timeout.error,
      signed: { method: "POST", path: `/${spec.method.parent.typeName}/${spec.method.name}`, query: "" },
      format: binary ? "binary" : "json",
      async read() {
        const read = await readSingleEnvelope(exchange, readMaxBytes, spec.kind, endStreamFlag);
        flags = read.flags;
        return read.data;
      },
      message(data) {
        if ((flags & compressedFlag) === 0) return data;
        return decompress(compression.request, data, readMaxBytes);
      },
      decode: (bytes) => ({
        request: decodeRequest((b) => serialization.getI(binary).parse(b), bytes, binary),
      }),
      unary: () => Promise.reject(new Error("a Connect stream wire has no unary answer")),
      stream: (call, messages) =>
        writeStream(
          exchange,
          call,
          messages,
          (message) => serialization.getO(binary).serialize(message),
          compression.response,
          compressMinBytes,
          (err) => end(call, err),
          (err) => end(call, err),
        ),
      error: (call, err) => end(call, err),
    };
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
