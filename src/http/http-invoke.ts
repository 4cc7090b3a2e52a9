import type { IncomingHttpHeaders } from "node:http";
import type { DescMethod, Message } from "@bufbuild/protobuf";
import {
  createContextValues,
  type ConnectError,
  type ContextValues,
  type HandlerContext,
  type Interceptor,
  type ServiceImplSpec,
} from "@connectrpc/connect";
import { parseTimeout } from "@connectrpc/connect/protocol-connect";
import type { Auth } from "../auth/index.js";
import {
  exchangeKey,
  type EdgeHandler,
  type Exchange,
  type NodeServerRequest,
  type Protocol,
} from "../edge/exchange.js";
import { AppError, scrubSecrets } from "../errors/index.js";
import { httpRequestInfoKey, type HttpRequestInfo } from "../lib/request-context.js";
import type { Logger } from "../log/index.js";
import { failCall } from "../rpc/wire-error.js";
import { createInProcessCalls, type InProcessCall } from "../server/in-process-call.js";
import type { RestError } from "./rest-error.js";
import { sseEvent, writeSse } from "./rest-sse.js";
import { callError, copyHeaders, sendError, sendJson } from "./rest-write.js";
import { headerValue } from "../server/node-headers.js";
import { readRequestBody, RequestBodyEnded } from "./request-body.js";

export interface HttpInvokeOptions {
  /** The router's interceptors, outermost first; they run for every HTTP call as for gRPC and Connect. */
  readonly interceptors: readonly Interceptor[];
  /**
   * Largest deadline (connect-timeout-ms / grpc-timeout) a caller may set, as the router's option of the
   * same name; a larger one is refused with INVALID_ARGUMENT. Default: unlimited, like Connect.
   */
  readonly maxTimeoutMs?: number;
  /** Aborting it aborts the context signal of every running call (the end of the shutdown grace). */
  readonly shutdownSignal?: AbortSignal;
  /** For failures of the HTTP surface itself (not for caller errors). */
  readonly logger?: Logger;
  /** Extra context values per request, like connectNodeAdapter's option of the same name. */
  readonly contextValues?: (req: NodeServerRequest) => ContextValues;
  /**
   * Auth's body-free checks (see `Auth.precheck`), run by `read` before the request body is parsed, so
   * that no unauthenticated request costs a parse. None by default.
   */
  readonly precheck?: Auth["precheck"];
}

/** The error answer of an HTTP surface: the error table's status and headers, the surface's body. */
export type ErrorWriter = (err: ConnectError) => RestError;

/** How one HTTP surface (REST, the OpenAI-compatible one) writes what a call produced. */
export interface CallWriter {
  readonly error: ErrorWriter;
  /** The JSON of a unary call's answer (200); may throw an AppError the surface finds in it (404...). */
  unary(message: Message): string;
  /** The JSON writer of each message of a server stream (SSE `data:`), for the stream's request. */
  stream(request: Message): (message: Message) => string;
}

/** A call an HTTP surface has matched and built: the method, its request, and what the caller sent. */
export interface HttpCall {
  readonly spec: ServiceImplSpec["methods"][string];
  readonly request: Message;
  /** The procedure URL the context reports (`/<service>/<method>`). */
  readonly url: string;
}

/**
 * A call whose implementation is given with it, answering with JSON rather than protobuf messages (the chat
 * RPCs of the JSON surfaces, src/http/chat-json.ts): the same interceptors, context and error handling.
 */
export type JsonHttpCall<I, O> = {
  readonly spec: ServiceImplSpec["methods"][string];
  /** What the implementation gets, and interceptors see as the request message. */
  readonly request: I;
  readonly url: string;
  /** The JSON of the answer (unary) or the SSE `data:` of each streamed answer. */
  readonly text: (answer: O) => string;
} & (
  | {
      /** A unary method's implementation: its answer is written as JSON. */
      readonly unary: (request: I, context: HandlerContext) => Promise<O>;
      readonly stream?: undefined;
    }
  | {
      /** A server-streaming method's implementation: its answers are written as Server-Sent Events. */
      readonly stream: (request: I, context: HandlerContext) => AsyncIterable<O>;
      readonly unary?: undefined;
    }
);

export interface HttpInvoker {
  /**
   * Reads the request body up to `maxBytes` (AppError `request_too_large` beyond), then runs auth's
   * body-free checks for `method`, which throw the AppError of a refused caller: read, size-limited, but
   * not yet parsed.
   */
  read(exchange: Exchange, method: DescMethod, maxBytes: number): Promise<Buffer>;
  /**
   * Runs a call in-process (src/server/in-process-call.ts) and writes its answer: JSON for unary calls
   * (rest-write.ts); Server-Sent Events for server streams (rest-sse.ts); an error before the first
   * message is a plain error answer. Interceptors see `httpRequestInfoKey` and the caller's
   * authorization, `x-*` and trace headers; a gRPC-style deadline header counts as the Connect one.
   */
  invoke(exchange: Exchange, call: HttpCall, writer: CallWriter): Promise<void>;
  /** Like `invoke`, for a call that brings its implementation and answers JSON (JsonHttpCall). */
  invokeJson<I, O>(exchange: Exchange, call: JsonHttpCall<I, O>, errorOf: ErrorWriter): Promise<void>;
  /**
   * Answers a request refused before any call (an AppError: what the caller got wrong): the wire error is
   * recorded on the exchange by the one converter (failCall) and written in the surface's shape. A 413
   * leaves the body unread, so it closes an HTTP/1.1 connection.
   */
  refuse(exchange: Exchange, thrown: unknown, errorOf: ErrorWriter): void;
  /**
   * The edge handler of one surface around `handle`: sets the exchange's protocol; an unexpected failure
   * is logged as `<name> failure` (scrubbed) and answered 500 in the surface's shape.
   */
  handler(
    name: string,
    protocol: Protocol,
    handle: (exchange: Exchange) => Promise<void>,
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

/** The HTTP request info for interceptors. */
function requestInfo(exchange: Exchange): HttpRequestInfo {
  return { method: exchange.method, path: exchange.path, query: exchange.query };
}

/**
 * Creates the call path the HTTP surfaces share (see HttpInvoker): the REST transcoder
 * (rest-handler.ts) and the OpenAI-compatible surface (openai-handler.ts) differ only in how they route,
 * build the request and shape the answer (docs/architecture.md, "HTTP surfaces").
 */
export function createHttpInvoker(options: HttpInvokeOptions): HttpInvoker {
  const { logger, shutdownSignal, precheck } = options;
  const maxTimeoutMs = options.maxTimeoutMs ?? Number.MAX_SAFE_INTEGER;
  const calls = createInProcessCalls({ interceptors: options.interceptors, shutdownSignal });

  async function read(exchange: Exchange, method: DescMethod, maxBytes: number): Promise<Buffer> {
    const { req } = exchange;
    const body = await readRequestBody(req, maxBytes);
    if (precheck !== undefined) {
      const headers = {
        get: (name: string) => headerValue(req.headers[name]) ?? null,
        has: (name: string) => name in req.headers,
      };
      await precheck({
        service: method.parent.typeName,
        method: method.name,
        headers,
        rawHeaders: req.rawHeaders,
        exchange,
        // The HMAC signature covers the HTTP request as sent, raw body included (docs/auth.md).
        signed: { method: exchange.method, path: exchange.path, query: exchange.query },
        body: () => body,
      });
    }
    return body;
  }

  function refuse(exchange: Exchange, thrown: unknown, errorOf: ErrorWriter): void {
    const err = failCall(createContextValues().set(exchangeKey, exchange), thrown);
    const unread = thrown instanceof AppError && thrown.code === "request_too_large";
    sendError(exchange.req, exchange.res, errorOf(err), unread);
  }

  /** Opens the call (or refuses it for its deadline header: undefined) with the caller's headers and deadline. */
  function open(exchange: Exchange, spec: HttpCall["spec"], url: string, errorOf: ErrorWriter) {
    const { req } = exchange;
    const requestHeader = requestHeaders(req.headers);
    const timeout = parseTimeout(requestHeader["connect-timeout-ms"] ?? null, maxTimeoutMs);
    if (timeout.error !== undefined) {
      // Refused before the call, as the Connect handler does (no interceptor runs).
      refuse(exchange, timeout.error, errorOf);
      return undefined;
    }
    const contextValues = (options.contextValues?.(req) ?? createContextValues()).set(
      httpRequestInfoKey,
      requestInfo(exchange),
    );
    return calls.open(exchange, spec, {
      protocolName: exchange.protocol,
      url,
      requestHeader,
      timeoutMs: timeout.timeoutMs,
      contextValues,
    });
  }

  /** Writes a unary call's answer: 200 with its JSON, or the error answer. */
  async function answerUnary<O>(
    exchange: Exchange,
    opened: InProcessCall,
    run: () => Promise<O>,
    text: (answer: O) => string,
    errorOf: ErrorWriter,
  ): Promise<void> {
    const { req, res } = exchange;
    const { context } = opened;
    let answer: O;
    try {
      answer = await run();
    } catch (err) {
      sendError(req, res, callError(err as ConnectError, context, true, errorOf));
      return;
    }
    let body: string;
    try {
      body = text(answer);
    } catch (thrown) {
      // An AppError of the surface (a model not listed) answers the call; anything else is our fault.
      if (!(thrown instanceof AppError)) throw thrown;
      sendError(req, res, callError(opened.fail(thrown), context, true, errorOf));
      return;
    }
    const headers = copyHeaders(context.responseTrailer, copyHeaders(context.responseHeader, {}));
    sendJson(res, 200, body, headers);
  }

  /** Writes a server stream as Server-Sent Events, or the error answer when it fails before the first message. */
  async function answerStream<O>(
    exchange: Exchange,
    opened: InProcessCall,
    messages: AsyncIterator<O>,
    text: (answer: O) => string,
    errorOf: ErrorWriter,
  ): Promise<void> {
    const { req, res } = exchange;
    const { context } = opened;
    let first: IteratorResult<O>;
    try {
      first = await messages.next();
    } catch (err) {
      // An error before the first message (authentication, limits) is an ordinary error answer, not a stream.
      sendError(req, res, callError(err as ConnectError, context, false, errorOf));
      return;
    }
    const headers = copyHeaders(context.responseHeader, {});
    await writeSse(res, headers, first, messages, text, errorOf, context.signal);
  }

  async function invoke(exchange: Exchange, call: HttpCall, writer: CallWriter): Promise<void> {
    const { spec, request } = call;
    const opened = open(exchange, spec, call.url, writer.error);
    if (opened === undefined) return;
    if (spec.kind === "unary") {
      await answerUnary(
        exchange,
        opened,
        () => opened.unary(request),
        (m) => writer.unary(m),
        writer.error,
      );
      return;
    }
    await answerStream(exchange, opened, opened.stream(request), writer.stream(request), writer.error);
  }

  async function invokeJson<I, O>(
    exchange: Exchange,
    call: JsonHttpCall<I, O>,
    errorOf: ErrorWriter,
  ): Promise<void> {
    const { spec, request } = call;
    const opened = open(exchange, spec, call.url, errorOf);
    if (opened === undefined) return;
    if (call.unary !== undefined) {
      const { unary } = call;
      await answerUnary(exchange, opened, () => opened.unaryWith(request, unary), call.text, errorOf);
    } else {
      await answerStream(exchange, opened, opened.streamWith(request, call.stream), call.text, errorOf);
    }
  }

  function handler(
    name: string,
    protocol: Protocol,
    handle: (exchange: Exchange) => Promise<void>,
    errorOf: ErrorWriter,
  ): EdgeHandler {
    return function httpSurface(exchange) {
      const { req, res } = exchange;
      exchange.protocol = protocol;
      handle(exchange).catch((err: unknown) => {
        if (err instanceof RequestBodyEnded) {
          // Nobody to answer (or the body deadline already did): the access line tells how it ended.
          if (!res.writableEnded) res.destroy();
          return;
        }
        // Only a scrubbed message: the cause of an unexpected failure may quote anything.
        const cause = scrubSecrets(err instanceof Error ? `${err.name}: ${err.message}` : String(err));
        logger?.error({ requestId: exchange.requestId, cause, path: exchange.path }, `${name} failure`);
        exchange.error ??= failCall(createContextValues(), err);
        const answer = errorOf(exchange.error);
        if (!res.headersSent) {
          sendError(req, res, answer, true);
        } else if (!res.writableEnded) {
          res.end(sseEvent(answer.body, "error"));
        }
      });
    };
  }

  return { read, invoke, invokeJson, refuse, handler };
}
