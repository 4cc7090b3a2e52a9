import { hash } from "node:crypto";
import { once } from "node:events";
import type { EventEmitter } from "node:events";
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import type { Message } from "@bufbuild/protobuf";
import {
  type ConnectError,
  createContextValues,
  createHandlerContext,
  type ContextValues,
  type HandlerContext,
  type Interceptor,
  type ServiceImplSpec,
} from "@connectrpc/connect";
import {
  createAsyncIterable,
  invokeUnaryImplementation,
  transformInvokeImplementation,
} from "@connectrpc/connect/protocol";
import { parseTimeout } from "@connectrpc/connect/protocol-connect";
import {
  exchangeKey,
  type EdgeHandler,
  type Exchange,
  type NodeServerRequest,
  type NodeServerResponse,
  type Protocol,
} from "../edge/index.js";
import { AppError, scrubSecrets } from "../errors/index.js";
import { callEnded, createCallSignals } from "../lib/call-signals.js";
import { httpRequestInfoKey, type HttpRequestInfo } from "../lib/request-context.js";
import type { Logger } from "../log/index.js";
import { accessRecordKey } from "../rpc/access-record.js";
import { failCall } from "../rpc/wire-error.js";
import { isProtocolHeader, type RestError } from "./rest-error.js";
import { sseDone, sseEvent, type StreamJsonWriter } from "./sse.js";

export type { NodeServerRequest, NodeServerResponse };

export interface HttpCallOptions {
  /** The router's interceptors, outermost first; they run for every HTTP call as for gRPC and Connect. */
  readonly interceptors: readonly Interceptor[];
  /**
   * Largest deadline (connect-timeout-ms / grpc-timeout) a caller may set, as the router's option of the
   * same name; a larger one is refused with INVALID_ARGUMENT. Default: unlimited, like Connect.
   */
  readonly maxTimeoutMs?: number;
  /** Aborting it aborts the context signal of every running call (last step of a shutdown). */
  readonly shutdownSignal?: AbortSignal;
  /** For failures of the HTTP layer itself (not for caller errors). */
  readonly logger?: Logger;
  /** Extra context values per request, like connectNodeAdapter's option of the same name. */
  readonly contextValues?: (req: NodeServerRequest) => ContextValues;
}

/** The answer to a call that failed before any output (errors of the S7 table, in the surface's shape). */
export type ErrorWriter = (err: ConnectError) => RestError;

/** How one HTTP surface (REST, the OpenAI-compatible one) writes what a call produced. */
export interface CallWriter {
  readonly error: ErrorWriter;
  /** The JSON of a unary call's answer (200); may throw an AppError the surface finds in it (404...). */
  unary(message: Message): string;
  /** The JSON text of each message of a server stream (SSE `data:`). */
  stream(request: Message): StreamJsonWriter;
}

/** A call an HTTP surface has matched and built: the method, its request, and what the caller sent. */
export interface HttpCall {
  readonly spec: ServiceImplSpec["methods"][string];
  readonly request: Message;
  /** The raw body, for the HMAC signature (hashed only when a verifier asks). */
  readonly body: Buffer;
  /** The procedure URL the context reports (`/<service>/<method>`). */
  readonly url: string;
}

export interface HttpCaller {
  /**
   * Runs a call in-process through the interceptors, exactly as the Connect router does for gRPC and
   * Connect (same context, deadline and error handling, the exchange and its access record in the context
   * values), without serializing the messages, and writes its answer: JSON for unary calls; Server-Sent
   * Events for server streams (`data: <json>` per message, OpenAI's `data: [DONE]` after the last, a
   * failure after the first message as `event: error` with the surface's error body and no `[DONE]`). An
   * error before the first message is a plain error answer. Interceptors see `httpRequestInfoKey` and the
   * caller's authorization, `x-*` and trace headers.
   */
  invoke(exchange: Exchange, signal: AbortSignal, call: HttpCall, writer: CallWriter): Promise<void>;
  /**
   * Answers a request refused before any call (what the caller got wrong: an AppError): the wire error is
   * recorded on the exchange by the one converter (failCall) and written in the surface's shape. A refusal
   * that leaves the body unread (413) closes an HTTP/1.1 connection.
   */
  refuse(exchange: Exchange, thrown: AppError, errorOf: ErrorWriter): void;
  /**
   * The edge handler around `handle` for one surface: sets the exchange's protocol; the signal `handle`
   * gets is aborted when the caller goes away before the answer (so is the upstream request behind it) and
   * at the end of a shutdown; an unexpected failure is logged as `<name> failure` (scrubbed) and answered
   * 500 in the surface's shape.
   */
  handler(
    name: string,
    protocol: Protocol,
    handle: (exchange: Exchange, signal: AbortSignal) => Promise<void>,
    errorOf: ErrorWriter,
  ): EdgeHandler;
}

/** Caller headers an interceptor may need; everything else stays behind. */
function passesThrough(name: string): boolean {
  return (
    name === "authorization" ||
    name === "traceparent" ||
    name === "tracestate" ||
    name === "x-cloud-trace-context" ||
    name === "user-agent" ||
    name === "connect-timeout-ms" ||
    (name.charCodeAt(0) === 120 /* x */ && name.charCodeAt(1) === 45) /* - */
  );
}

const grpcTimeoutRe = /^(\d{1,8})([HMSmun])$/;
const grpcTimeoutUnitMs = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 } as const;

export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(", ") : value;
}

/**
 * The request headers interceptors see: the caller's that pass through, and a gRPC-style deadline as the
 * Connect one (`connect-timeout-ms`), which is also the deadline of the call.
 */
function requestHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name in headers) {
    if (!passesThrough(name)) continue;
    const v = headerValue(headers[name]);
    if (v !== undefined) out[name] = v;
  }
  const grpcTimeout = headers["grpc-timeout"];
  if (grpcTimeout !== undefined && out["connect-timeout-ms"] === undefined) {
    const m = grpcTimeoutRe.exec(headerValue(grpcTimeout) ?? "");
    if (m !== null) {
      const ms = Math.ceil(Number(m[1]) * grpcTimeoutUnitMs[m[2] as keyof typeof grpcTimeoutUnitMs]);
      out["connect-timeout-ms"] = String(ms);
    }
  }
  return out;
}

export function sendJson(
  res: NodeServerResponse,
  status: number,
  body: string,
  headers: OutgoingHttpHeaders,
): void {
  headers["content-type"] = "application/json";
  headers["content-length"] = Buffer.byteLength(body);
  res.writeHead(status, headers);
  res.end(body);
}

export function sendError(
  req: NodeServerRequest,
  res: NodeServerResponse,
  err: RestError,
  closeConnection = false,
): void {
  const headers: OutgoingHttpHeaders = { ...err.headers };
  // An unread HTTP/1.1 body would otherwise be parsed as the next request; over HTTP/2 the one-port server
  // drains an unread body before the answer ends (src/server/one-port.ts).
  if (closeConnection && req.httpVersionMajor === 1) headers["connection"] = "close";
  sendJson(res, err.status, err.body, headers);
}

/** Copies the non-protocol entries of call metadata into HTTP response headers. */
function copyHeaders(from: Headers, to: OutgoingHttpHeaders): OutgoingHttpHeaders {
  from.forEach((value, name) => {
    if (!isProtocolHeader(name)) to[name] = value;
  });
  return to;
}

/**
 * The answer of a failed call: the surface's status and body; as headers, the call's response headers
 * (unary only) and trailers, then the error's metadata, as a Connect handler would send them.
 */
function callError(
  err: ConnectError,
  context: HandlerContext,
  unary: boolean,
  writer: CallWriter,
): RestError {
  const answer = writer.error(err);
  const headers: OutgoingHttpHeaders = {};
  if (unary) copyHeaders(context.responseHeader, headers);
  copyHeaders(context.responseTrailer, headers);
  return {
    status: answer.status,
    body: answer.body,
    headers: Object.assign(headers, answer.headers),
  };
}

const emptySha256 = hash("sha256", Buffer.alloc(0), "hex");

/**
 * The HTTP request info for interceptors. The body's SHA-256 is computed on first read: only HMAC
 * verification needs it, a JWT caller's call never pays for it.
 */
function requestInfo(method: string, path: string, query: string, body: Buffer): HttpRequestInfo {
  let sha256: string | undefined = body.length === 0 ? emptySha256 : undefined;
  return {
    method,
    path,
    query,
    get bodySha256(): string {
      return (sha256 ??= hash("sha256", body, "hex"));
    },
  };
}

/** Writes a chunk and waits for the socket to drain; false when the client has gone. */
async function write(res: NodeServerResponse, chunk: string, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  if (res.write(chunk)) return true;
  try {
    await once(res as unknown as EventEmitter, "drain", { signal });
    return true;
  } catch {
    return false;
  }
}

/** Creates the in-process call path the HTTP surfaces share (see HttpCaller). */
export function createHttpCaller(options: HttpCallOptions): HttpCaller {
  const { logger, shutdownSignal } = options;
  const maxTimeoutMs = options.maxTimeoutMs ?? Number.MAX_SAFE_INTEGER;
  const interceptors = [...options.interceptors];

  async function invoke(
    exchange: Exchange,
    signal: AbortSignal,
    call: HttpCall,
    writer: CallWriter,
  ): Promise<void> {
    const { req, res } = exchange;
    const { spec, request } = call;
    const contextValues = (options.contextValues?.(req) ?? createContextValues())
      .set(exchangeKey, exchange)
      .set(accessRecordKey, exchange.record);
    const requestHeader = requestHeaders(req.headers);
    const timeout = parseTimeout(requestHeader["connect-timeout-ms"] ?? null, maxTimeoutMs);
    if (timeout.error !== undefined) {
      // Refused before the call, as the Connect handler does (no interceptor runs).
      sendError(req, res, writer.error(failCall(contextValues, timeout.error)));
      return;
    }
    contextValues.set(
      httpRequestInfoKey,
      requestInfo(exchange.method, exchange.path, exchange.query, call.body),
    );
    const init: Parameters<typeof createHandlerContext>[0] = {
      service: spec.method.parent,
      method: spec.method,
      protocolName: exchange.protocol,
      requestMethod: "POST",
      url: call.url,
      requestSignal: signal,
      requestHeader,
      contextValues,
    };
    // The shutdown signal reaches the call through `signal` (see handler), not as a listener per call.
    if (timeout.timeoutMs !== undefined) init.timeoutMs = timeout.timeoutMs;
    const context = createHandlerContext(init);

    if (spec.kind === "unary") {
      const failed = (thrown: unknown): void => {
        const err = failCall(contextValues, thrown);
        context.abort(err);
        sendError(req, res, callError(err, context, true, writer));
      };
      let message: Message;
      try {
        message = await invokeUnaryImplementation(spec, context, request, interceptors);
      } catch (thrown) {
        failed(thrown);
        return;
      }
      let body: string;
      try {
        body = writer.unary(message);
      } catch (thrown) {
        // An AppError of the surface (a model not listed) answers the call; anything else is our fault.
        if (!(thrown instanceof AppError)) throw thrown;
        failed(thrown);
        return;
      }
      // Connect aborts the context after every call. Its signal is linked only to this request's own
      // signals, which nothing else holds: an abort is needed only to stop the deadline timer (an abort
      // costs a DOMException and an event to every signal derived from it, AbortSignal.any included).
      if (timeout.timeoutMs !== undefined) context.abort(callEnded);
      const headers = copyHeaders(context.responseTrailer, copyHeaders(context.responseHeader, {}));
      sendJson(res, 200, body, headers);
      return;
    }

    const messages = transformInvokeImplementation(
      spec,
      context,
      interceptors,
    )(createAsyncIterable([request]))[Symbol.asyncIterator]();
    let next: IteratorResult<Message>;
    try {
      next = await messages.next();
    } catch (thrown) {
      // An error before the first message (authentication, limits) is an ordinary error answer, not a stream.
      const err = failCall(contextValues, thrown);
      context.abort(err);
      sendError(req, res, callError(err, context, false, writer));
      return;
    }
    const toJson = writer.stream(request);
    const headers = copyHeaders(context.responseHeader, {});
    headers["content-type"] = "text/event-stream; charset=utf-8";
    headers["cache-control"] = "no-cache";
    res.writeHead(200, headers);
    try {
      while (next.done !== true) {
        if (!(await write(res, sseEvent(toJson(next.value)), signal))) break;
        try {
          next = await messages.next();
        } catch (thrown) {
          const err = failCall(contextValues, thrown);
          context.abort(err);
          if (!signal.aborted) await write(res, sseEvent(writer.error(err).body, "error"), signal);
          break;
        }
      }
      // Only a stream that finished well ends with OpenAI's terminator; a failed one ended on its error event.
      if (next.done === true) await write(res, sseDone, signal);
    } finally {
      if (next.done !== true) await messages.return?.();
      context.abort();
    }
    res.end();
  }

  function refuse(exchange: Exchange, thrown: AppError, errorOf: ErrorWriter): void {
    const err = failCall(createContextValues().set(exchangeKey, exchange), thrown);
    // An unread HTTP/1.1 body would otherwise be parsed as the next request.
    sendError(exchange.req, exchange.res, errorOf(err), thrown.code === "request_too_large");
  }

  const calls = createCallSignals(shutdownSignal);

  function handler(
    name: string,
    protocol: Protocol,
    handle: (exchange: Exchange, signal: AbortSignal) => Promise<void>,
    errorOf: ErrorWriter,
  ): EdgeHandler {
    return function httpCallHandler(exchange) {
      const { req, res } = exchange;
      exchange.protocol = protocol;
      const abort = calls.open();
      // Abort the call (and the upstream request behind it) when the caller goes away before the answer;
      // a response that finished needs no abort.
      (res as unknown as EventEmitter).once("close", () => {
        calls.close(abort);
        // Over HTTP/2 a client's RST_STREAM also marks the compat response finished: its code tells.
        if (!res.writableFinished || ("stream" in req && req.stream.rstCode !== 0)) abort.abort();
      });
      handle(exchange, abort.signal).catch((err: unknown) => {
        // Only a scrubbed message: the cause of an unexpected failure may quote anything.
        const cause = scrubSecrets(err instanceof Error ? `${err.name}: ${err.message}` : String(err));
        logger?.error({ cause, path: exchange.path }, `${name} failure`);
        exchange.error ??= failCall(createContextValues(), err);
        const answer = errorOf(exchange.error);
        if (!res.headersSent) sendError(req, res, answer, true);
        else if (!res.writableEnded) res.end(sseEvent(answer.body, "error"));
      });
    };
  }

  return { invoke, refuse, handler };
}
