import type { Message } from "@bufbuild/protobuf";
import type { ConnectError } from "@connectrpc/connect";
import type { ServiceImplSpec } from "@connectrpc/connect";
import {
  compressionNegotiate,
  createMethodSerializationLookup,
  type Compression,
  type Serialization,
} from "@connectrpc/connect/protocol";
import { parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import type { CallWire, MethodSpec } from "../../call/pipeline.js";
import type { InProcessCall } from "../../call/in-process-call.js";
import type { Exchange } from "../../edge/exchange.js";
import { compressedFlag, decompress, envelope, readSingleEnvelope, writeStream } from "../envelope.js";
import { decodeRequest } from "../malformed-message.js";
import { toSpecEncoding } from "../../compat/grpc-message.js";
import { nodeHeaders, requestHeaders } from "../../compat/node-headers.js";

// The gRPC and gRPC-Web codecs of the call pipeline (docs/architecture.md, "The call pipeline"): unary
// and server-streaming calls, binary or JSON. Their framing, limits, error texts, compression and trailers
// mirror connect-es 2.3.0's gRPC and gRPC-Web handlers (@connectrpc/connect/protocol-grpc and
// protocol-grpc-web) and connect-node's response writer; test/server/grpc-unary.test.ts and
// test/server/stream-codecs.test.ts compare them byte for byte with connect-node's answers. Re-check both
// when connect-es is upgraded.

interface Route {
  readonly spec: MethodSpec;
  readonly rpc: string;
  readonly json: Serializations;
  readonly binary: Serializations;
}

interface Serializations {
  readonly input: Serialization<Message>;
  readonly output: Serialization<Message>;
}

export interface GrpcCodecOptions {
  /** The services registered on the router (see recordServices); their unary and server-streaming methods. */
  readonly services: readonly ServiceImplSpec[];
  /** As the router's options of the same names. */
  readonly readMaxBytes: number;
  readonly writeMaxBytes: number;
  readonly maxTimeoutMs: number;
  readonly jsonOptions?: Parameters<typeof createMethodSerializationLookup>[2];
  /** Request and response compressions, as connect-node's `acceptCompression`. */
  readonly acceptCompression: readonly Compression[];
  /** Responses (each message) at least this large are compressed when the caller accepts it (1024). */
  readonly compressMinBytes?: number;
}

/** Takes a gRPC or gRPC-Web call it serves and says how (a CallWire); undefined for any other request. */
export type GrpcCodec = (exchange: Exchange) => CallWire | undefined;

const headerEncoding = "grpc-encoding";
const headerAcceptEncoding = "grpc-accept-encoding";
/** gRPC over HTTP/2 and gRPC-Web, binary or JSON (`-text`, base64, is left to connect, which refuses it). */
const grpcType = /^application\/(grpc|grpc-web)(?:\+(proto|json))?(?:;|$)/i;

/**
 * Creates the gRPC family codec. It takes POST calls of unary and server-streaming methods: gRPC over
 * HTTP/2, gRPC-Web over HTTP/1.1 and HTTP/2. Everything else (client and bidi streams such as server
 * reflection, gRPC over HTTP/1.1, gRPC-Web text, other HTTP methods) is left to the fallback lane.
 */
export function createGrpcCodec(options: GrpcCodecOptions): GrpcCodec {
  const { readMaxBytes, maxTimeoutMs } = options;
  const acceptCompression = [...options.acceptCompression];
  const compressMinBytes = options.compressMinBytes ?? 1024;
  const limits = { readMaxBytes, writeMaxBytes: options.writeMaxBytes, compressMinBytes };
  const routes = new Map<string, Route>();
  for (const service of options.services) {
    for (const spec of Object.values(service.methods)) {
      if (spec.kind !== "unary" && spec.kind !== "server_streaming") continue;
      const lookup = createMethodSerializationLookup(spec.method, undefined, options.jsonOptions, limits);
      routes.set(`/${spec.method.parent.typeName}/${spec.method.name}`, {
        spec,
        rpc: `${spec.method.parent.typeName}/${spec.method.name}`,
        json: { input: lookup.getI(false), output: lookup.getO(false) },
        binary: { input: lookup.getI(true), output: lookup.getO(true) },
      });
    }
  }

  return function grpcCodec(exchange) {
    if (exchange.method !== "POST") return undefined;
    const contentType = exchange.req.headers["content-type"];
    if (contentType === undefined) return undefined;
    const type = grpcType.exec(contentType);
    if (type === null) return undefined;
    const web = (type[1] as string).length > 4;
    // gRPC proper needs HTTP/2 (connect answers the rest).
    if (!web && exchange.httpVersion !== "2") return undefined;
    const route = routes.get(exchange.path);
    if (route === undefined) return undefined;
    const authority = "authority" in exchange.req ? exchange.req.authority : exchange.req.headers.host;
    if (authority === undefined) return undefined;
    const binary = type[2] === undefined || type[2].toLowerCase() === "proto";
    exchange.protocol = web ? "grpc-web" : "grpc";
    exchange.rpc = route.rpc;
    return wireOf(exchange, route, web, binary, `http://${authority}${exchange.req.url ?? ""}`);
  };

  function wireOf(exchange: Exchange, route: Route, web: boolean, binary: boolean, url: string): CallWire {
    const { spec } = route;
    const serialization = binary ? route.binary : route.json;
    const header = requestHeaders(exchange.req.headers);
    const timeout = parseTimeout(header.get("grpc-timeout"), maxTimeoutMs);
    const compression = compressionNegotiate(
      acceptCompression,
      header.get(headerEncoding),
      header.get(headerAcceptEncoding),
      headerAcceptEncoding,
    );
    const responseHeader: Record<string, string> = {
      "content-type": `application/${web ? "grpc-web" : "grpc"}+${binary ? "proto" : "json"}`,
    };
    if (compression.response) responseHeader[headerEncoding] = compression.response.name;
    let flags = 0;
    const write = web ? writeWeb : writeGrpc;
    return {
      name: web ? "gRPC-Web codec" : "gRPC codec",
      spec,
      init: {
        protocolName: web ? "grpc-web" : "grpc",
        url,
        requestHeader: header,
        responseHeader,
        responseTrailer: { "grpc-status": "0" },
        timeoutMs: timeout.timeoutMs,
      },
      // Refusals before the body, in connect's order: compression, then the deadline.
      refusal: compression.error ?? timeout.error,
      signed: { method: "POST", path: `/${spec.method.parent.typeName}/${spec.method.name}`, query: "" },
      format: binary ? "binary" : "json",
      async read() {
        const envelope = await readSingleEnvelope(
          exchange,
          readMaxBytes,
          spec.kind,
          web ? trailerFlag : undefined,
        );
        flags = envelope.flags;
        return envelope.data;
      },
      message(data) {
        if ((flags & compressedFlag) === 0) return data;
        return decompress(compression.request, data, readMaxBytes);
      },
      decode: (bytes) => ({
        request: decodeRequest((b) => serialization.input.parse(b), bytes, binary),
      }),
      async unary(call, answer) {
        let body: Uint8Array;
        try {
          body = await envelope(
            serialization.output.serialize(answer as Message),
            compression.response,
            compressMinBytes,
          );
        } catch (thrown) {
          await write(exchange, call, undefined, call.fail(thrown));
          return;
        }
        await write(exchange, call, [body], undefined);
      },
      stream: (call, messages) =>
        writeStream(
          exchange,
          call,
          messages,
          (message) => serialization.output.serialize(message),
          compression.response,
          compressMinBytes,
          (err) => write(exchange, call, undefined, err),
          (err) => end(exchange, call, err),
        ),
      error(call, err) {
        return write(exchange, call, undefined, err);
      },
    };

    /** A whole gRPC answer: headers, the message envelopes, the trailers with the status. */
    async function writeGrpc(
      exchange: Exchange,
      call: InProcessCall,
      body: Uint8Array[] | undefined,
      err: ConnectError | undefined,
    ): Promise<void> {
      const { res } = exchange;
      if (res.headersSent) {
        await end(exchange, call, err);
        return;
      }
      if (err !== undefined) trailerStatus(call.context.responseTrailer, err, false);
      if (res.writableEnded || ("stream" in res && res.stream.destroyed)) return;
      res.writeHead(200, nodeHeaders(call.context.responseHeader));
      res.addTrailers(nodeHeaders(call.context.responseTrailer));
      const chunk = body?.[0];
      if (chunk === undefined) res.end();
      else res.end(chunk);
    }

    /** A whole gRPC-Web answer: headers, the message envelopes, the trailer frame. */
    async function writeWeb(
      exchange: Exchange,
      call: InProcessCall,
      body: Uint8Array[] | undefined,
      err: ConnectError | undefined,
    ): Promise<void> {
      const { res } = exchange;
      if (res.headersSent) {
        await end(exchange, call, err);
        return;
      }
      if (res.writableEnded || res.destroyed) return;
      res.writeHead(200, nodeHeaders(call.context.responseHeader));
      if (body !== undefined) for (const chunk of body) res.write(chunk);
      await end(exchange, call, err);
    }

    /** Ends a started answer: the trailers (gRPC) or the trailer frame (gRPC-Web) with the status. */
    async function end(
      exchange: Exchange,
      call: InProcessCall,
      err: ConnectError | undefined,
    ): Promise<void> {
      const { res } = exchange;
      const trailer = call.context.responseTrailer;
      trailerStatus(trailer, err, web);
      if (res.writableEnded || res.destroyed) return;
      if (!web) {
        res.addTrailers(nodeHeaders(trailer));
        res.end();
        return;
      }
      let frame: Uint8Array;
      try {
        frame = await envelope(
          trailerSerialize(trailer),
          compression.response,
          compressMinBytes,
          trailerFlag,
        );
      } catch {
        res.destroy();
        return;
      }
      res.end(frame);
    }
  }
}

/**
 * Sets the status of a failed (or, with no error, finished) call on the trailers as connect does; gRPC's
 * `grpc-message` in the gRPC spec's encoding (src/compat/grpc-message.ts), gRPC-Web's as connect sends it.
 */
function trailerStatus(trailer: Headers, err: ConnectError | undefined, web: boolean): void {
  setTrailerStatus(trailer, err);
  if (web || err === undefined) return;
  const message = trailer.get("grpc-message");
  if (message !== null) trailer.set("grpc-message", toSpecEncoding(message));
}
