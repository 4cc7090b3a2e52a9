import {
  Code,
  ConnectError,
  createConnectRouter,
  createContextValues,
  type ConnectRouter,
  type ConnectRouterOptions,
  type ContextValues,
} from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { endStreamFlag, endStreamFromJson, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { trailerFlag, trailerParse } from "@connectrpc/connect/protocol-grpc-web";
import { universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { Compression } from "@connectrpc/connect/protocol";
import { fromBinary, type DescMessage } from "@bufbuild/protobuf";
import { exchangeKey, type Exchange } from "../../edge/exchange.js";
import { connectHttpStatusOf, requestTooLarge } from "../../errors/index.js";
import type { Auth } from "../../auth/index.js";
import type { Logger } from "../../log/index.js";
import { accessRecordKey } from "../../edge/access-record.js";
import { failCall } from "../../call/wire-error.js";
import { toSpecEncoding } from "../../compat/grpc-message.js";
import { checkBinaryValues, checkJsonValues } from "../../lib/message-limits.js";
import { malformedMessage } from "../malformed-message.js";
import { decompress } from "../envelope.js";

export interface ConnectDispatchOptions extends ConnectRouterOptions {
  readonly readMaxBytes: number;
  readonly acceptCompression: Compression[];
  /** Registers the services, as connectNodeAdapter's option of the same name. */
  readonly routes: (router: ConnectRouter) => void;
  readonly logger: Logger;
  /**
   * Auth's body-free checks (see `Auth.precheck`), run before the request body is parsed, so that no
   * unauthenticated request costs a parse. None by default.
   */
  readonly precheck?: Auth["precheck"];
}

/** Takes the request when its path is an RPC of the router, and says so; the caller hands the rest on. */
export type ConnectDispatch = (exchange: Exchange) => boolean;

const connectUnaryType = /^application\/(?:json|proto)(?:;|$)/i;
const connectStreamType = /^application\/connect\+/i;

/**
 * The Connect router (gRPC, gRPC-Web, Connect) served from the edge: connectNodeAdapter's routing, with
 * three things it has no hook for, done by wrapping what goes in and out instead of patching Node's
 * response methods:
 * - the request body limit answers `Request too large` (RESOURCE_EXHAUSTED; HTTP 413 for Connect unary)
 *   rather than connect's own text and 429: the body is counted (Connect unary) or its envelope lengths
 *   read (enveloped protocols) as it streams in, and a body over the limit fails with our error before
 *   connect sees the bytes;
 * - `grpc-message` is re-encoded the gRPC spec's way (see grpc-message.ts);
 * - the status a failed call carries in its trailers or end-of-stream message is recorded on the exchange
 *   when no interceptor saw the failure (errors raised by connect before the call, such as a malformed
 *   message), so the access line is right for every request.
 */
export function createConnectDispatch(options: ConnectDispatchOptions): ConnectDispatch {
  const { readMaxBytes, logger } = options;
  const router = createConnectRouter(options);
  options.routes(router);
  const paths = new Map<string, UniversalHandler>();
  for (const handler of router.handlers) paths.set(handler.requestPath, handler);
  const jsonOptions = options.jsonOptions;

  return function connectDispatch(exchange) {
    const handler = paths.get(exchange.path);
    if (handler === undefined) return false;
    const { req, res } = exchange;
    exchange.rpc = `${handler.service.typeName}/${handler.method.name}`;
    const contentType = req.headers["content-type"] ?? "";
    const enveloped =
      exchange.protocol === "grpc" || exchange.protocol === "grpc-web" || connectStreamType.test(contentType);
    if (exchange.protocol !== "grpc" && exchange.protocol !== "grpc-web") exchange.protocol = "connect";
    const contextValues = createContextValues()
      .set(exchangeKey, exchange)
      .set(accessRecordKey, exchange.record);

    let uReq;
    try {
      uReq = universalRequestFromNodeRequest(req, res, undefined, contextValues);
    } catch (err) {
      // HTTP/1.0 without Host: connect cannot build the request URL.
      answerConnectError(exchange, failCall(contextValues, err), 400);
      return true;
    }
    const tooLarge = (): ConnectError => failCall(contextValues, requestTooLarge(readMaxBytes));
    let body = uReq.body as AsyncIterable<Uint8Array>;
    if (enveloped) {
      body = limitEnvelopes(body, readMaxBytes, tooLarge);
    } else if (connectUnaryType.test(contentType)) {
      // The Connect codec takes every other unary POST (src/protocols/connect/connect-codec.ts).
      const declared = req.headers["content-length"];
      if (declared !== undefined && Number(declared) > readMaxBytes) {
        answerConnectError(exchange, tooLarge());
        return true;
      }
    }

    const { precheck } = options;
    // Only calls with one request message: a bidi or client stream's body does not end before the answer.
    const single = handler.method.methodKind === "unary" || handler.method.methodKind === "server_streaming";
    if (single) {
      const input = handler.method.input;
      const json = /json/i.test(contentType);
      const check = async (chunks: readonly Uint8Array[]): Promise<void> => {
        let message: Promise<Uint8Array | undefined> | undefined;
        const messageBytes = () =>
          (message ??= requestMessage(exchange, enveloped, chunks, options.acceptCompression, readMaxBytes));
        await precheck?.({
          service: handler.service.typeName,
          method: handler.method.name,
          headers: uReq.header,
          rawHeaders: req.rawHeaders,
          exchange,
          signed: { method: "POST", path: exchange.path, query: "" },
          body: messageBytes,
        });
        // Authenticated: the decode is bounded (src/lib/message-limits.ts) before connect starts it.
        const bytes = await messageBytes();
        if (bytes === undefined) return;
        if (json) checkJsonValues(bytes);
        else {
          checkBinaryValues(input, bytes);
          assertDecodes(input, bytes);
        }
      };
      body = afterCheck(body, check, contextValues);
    } else if (enveloped && !/json/i.test(contentType)) {
      // Client and bidi streams (server reflection): each uncompressed message is checked as it arrives.
      const input = handler.method.input;
      body = checkEnvelopes(body, (data) => assertDecodes(input, data), contextValues);
    }
    handler({ ...uReq, body })
      .then((uRes) => universalResponseToNodeResponse(observe(exchange, uRes), res))
      .catch((reason: unknown) => {
        if (ConnectError.from(reason).code === Code.Aborted) return;
        logger.error(
          {
            requestId: exchange.requestId,
            rpc: exchange.rpc,
            err: reason instanceof Error ? reason.message : String(reason),
          },
          "Connect handler failed",
        );
      });
    return true;
  };

  /** A Connect unary error answered here, before connect reads the request. */
  function answerConnectError(
    exchange: Exchange,
    err: ConnectError,
    status = connectHttpStatusOf(err),
  ): void {
    const body = errorToJsonBytes(err, jsonOptions ?? {});
    const headers: Record<string, string | number> = {
      "content-type": "application/json",
      "content-length": body.byteLength,
    };
    // The unread body of an HTTP/1.1 request would be taken for the next request.
    if (exchange.httpVersion === "1.1") headers["connection"] = "close";
    exchange.res.writeHead(status, headers);
    exchange.res.end(body);
  }
}

/**
 * Watches the response on its way out. gRPC: re-encodes `grpc-message` and records a failed status from
 * the trailers. gRPC-Web and Connect streams: records a failed status from the trailer frame or the
 * end-of-stream message (each body chunk connect yields is one whole envelope).
 */
function observe(exchange: Exchange, uRes: UniversalServerResponse): UniversalServerResponse {
  const body = uRes.body;
  if (body === undefined) return uRes;
  const grpcWeb = exchange.protocol === "grpc-web";
  if (exchange.protocol === "grpc") {
    return {
      ...uRes,
      body: (async function* () {
        yield* body;
        const trailer = uRes.trailer;
        if (trailer === undefined) return;
        const message = trailer.get("grpc-message");
        if (message !== null) trailer.set("grpc-message", toSpecEncoding(message));
        const status = Number(trailer.get("grpc-status") ?? "0");
        if (status !== 0 && status in Code) exchange.wireCode = status;
      })(),
    };
  }
  const flag = grpcWeb ? trailerFlag : endStreamFlag;
  // Connect unary answers carry their status in the HTTP status.
  if (!grpcWeb && !connectStreamType.test(uRes.header?.get("content-type") ?? "")) return uRes;
  return {
    ...uRes,
    body: (async function* () {
      for await (const chunk of body) {
        if (chunk.byteLength >= 5 && ((chunk[0] ?? 0) & flag) === flag) {
          exchange.wireCode = grpcWeb ? webTrailerCode(chunk) : endStreamCode(chunk);
        }
        yield chunk;
      }
    })(),
  };
}

function webTrailerCode(envelope: Uint8Array): Code | undefined {
  const status = Number(trailerParse(envelope.subarray(5)).get("grpc-status") ?? "0");
  return status !== 0 && status in Code ? status : undefined;
}

function endStreamCode(envelope: Uint8Array): Code | undefined {
  try {
    return endStreamFromJson(envelope.subarray(5)).error?.code;
  } catch {
    return undefined;
  }
}

/**
 * The body, ending only once `check` has passed: connect decodes a message when its bytes are complete,
 * so authentication (the HMAC signature over the raw message included) and the decoding limits run after
 * the (size-limited) read and before the decode, and a refusal fails the call with its own code in every
 * protocol. The size limit keeps its precedence.
 */
async function* afterCheck(
  body: AsyncIterable<Uint8Array>,
  check: (chunks: readonly Uint8Array[]) => Promise<void>,
  values: ContextValues,
): AsyncGenerator<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  try {
    await check(chunks);
  } catch (err) {
    throw failCall(values, err);
  }
  yield* chunks;
}

const compressedFlag = 0b0000_0001;

/**
 * The one request message of a gRPC, gRPC-Web or Connect call as encoded on the wire (protobuf binary, or
 * JSON), uncompressed: what an HMAC signature covers (docs/auth.md, "gRPC and Connect callers") and what
 * the decoding limits count. Connect unary: the POST body, content coding removed. Enveloped protocols: the
 * payload of the one message frame, decompressed per `grpc-encoding` (`connect-content-encoding` for
 * Connect streams). Undefined for anything else (no body, several frames, an unknown coding, a GET):
 * connect refuses those itself, and the interceptor refuses an HMAC call the check could not verify.
 */
async function requestMessage(
  exchange: Exchange,
  enveloped: boolean,
  chunks: readonly Uint8Array[],
  compressions: readonly Compression[],
  readMaxBytes: number,
): Promise<Uint8Array | undefined> {
  if (exchange.method !== "POST") return undefined;
  const first = chunks[0];
  const all =
    chunks.length === 1 && first !== undefined
      ? Buffer.from(first.buffer, first.byteOffset, first.byteLength)
      : Buffer.concat(chunks);
  const headers = exchange.req.headers;
  const header = (name: string): string | undefined => {
    const value = headers[name];
    return Array.isArray(value) ? value.join(",") : value;
  };
  /** Decompresses per a content coding name; undefined for one the server does not accept. */
  const decode = async (data: Uint8Array, coding: string | undefined) => {
    if (coding === undefined || coding === "identity") return data;
    const compression = compressions.find((c) => c.name === coding);
    return compression === undefined ? undefined : decompress(compression, data, readMaxBytes);
  };
  if (!enveloped) return decode(all, header("content-encoding"));
  if (all.length < 5 || all.readUInt32BE(1) !== all.length - 5) return undefined;
  const flags = all[0] ?? 0;
  const data = all.subarray(5);
  if (flags === 0) return data;
  if (flags !== compressedFlag) return undefined;
  const coding =
    exchange.protocol === "connect" ? header("connect-content-encoding") : header("grpc-encoding");
  return coding === undefined || coding === "identity" ? undefined : decode(data, coding);
}

/**
 * The body of an enveloped protocol (gRPC, gRPC-Web, Connect streaming), failing with `tooLarge()` as soon
 * as an envelope header declares a message over `maxBytes`, before connect reads that header. Only the
 * 5-byte headers are looked at; message bytes are skipped.
 */
async function* limitEnvelopes(
  body: AsyncIterable<Uint8Array>,
  maxBytes: number,
  tooLarge: () => ConnectError,
): AsyncGenerator<Uint8Array> {
  const head = new Uint8Array(5);
  let headRead = 0;
  let remaining = 0;
  for await (const chunk of body) {
    let i = 0;
    while (i < chunk.byteLength) {
      if (remaining > 0) {
        const n = Math.min(remaining, chunk.byteLength - i);
        remaining -= n;
        i += n;
        continue;
      }
      head[headRead++] = chunk[i++] ?? 0;
      if (headRead === 5) {
        headRead = 0;
        remaining = new DataView(head.buffer).getUint32(1);
        if (remaining > maxBytes) throw tooLarge();
      }
    }
    yield chunk;
  }
}

/**
 * Refuses a request message that is not valid protobuf binary before connect decodes it: the caller's
 * fault, INVALID_ARGUMENT `Malformed request message` (connect would answer INTERNAL), decided by our own
 * decode rather than by connect's error text. The fallback lane only: the codecs decode themselves.
 */
function assertDecodes(input: DescMessage, bytes: Uint8Array): void {
  try {
    fromBinary(input, bytes);
  } catch (err) {
    throw malformedMessage(err);
  }
}

/**
 * The body of a client or bidi stream, each complete uncompressed message envelope passed to `check`
 * before connect reads it; a refusal fails the call with its own code (recorded for the access line).
 */
async function* checkEnvelopes(
  body: AsyncIterable<Uint8Array>,
  check: (data: Uint8Array) => void,
  values: ContextValues,
): AsyncGenerator<Uint8Array> {
  let pending = Buffer.alloc(0);
  for await (const chunk of body) {
    pending = pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([pending, chunk]);
    while (pending.length >= 5) {
      const length = pending.readUInt32BE(1);
      if (pending.length < 5 + length) break;
      if (((pending[0] ?? 0) & compressedFlag) === 0) {
        try {
          check(pending.subarray(5, 5 + length));
        } catch (err) {
          throw failCall(values, err);
        }
      }
      pending = pending.subarray(5 + length);
    }
    yield chunk;
  }
}
