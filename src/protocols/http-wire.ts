import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import type { ConnectError } from "@connectrpc/connect";
import { parseTimeout } from "@connectrpc/connect/protocol-connect";
import type { InProcessCall } from "../call/in-process-call.js";
import type { CallWire, Decoded, MethodSpec } from "../call/pipeline.js";
import { readRequestBody } from "../call/read-body.js";
import type { Exchange } from "../edge/exchange.js";
import { isRequestTooLarge } from "../call/wire-error.js";
import { headerValue } from "../compat/node-headers.js";
import type { RestError } from "./http-error.js";
import { sseDone, sseEvent, writeSse } from "./sse.js";
import { callError, copyHeaders, sendError, sendJson } from "./http-write.js";

// The codec the HTTP surfaces share (the REST transcoder, rest-handler.ts, and the OpenAI-compatible
// surface, openai-handler.ts): a JSON body read whole, the HTTP request as signed, JSON answers and
// Server-Sent Events, errors in the surface's shape (docs/architecture.md, "HTTP surfaces"). The surfaces
// differ only in how they route, decode and shape an answer.

/** The error answer of an HTTP surface: the error table's status and headers, the surface's body. */
export type ErrorWriter = (err: ConnectError) => RestError;

/** One call an HTTP surface has routed: its method, how its request is decoded and its answer written. */
export interface HttpCall {
  /** Names the surface in the log line of its own failures ("REST transcoder failure"). */
  readonly name: string;
  readonly spec: MethodSpec;
  /** The procedure URL the context reports (`/<service>/<method>`). */
  readonly url: string;
  /** Largest request body; larger bodies get 413 before they are read in full. */
  readonly maxBodyBytes: number;
  /** Largest deadline a caller may ask for (connect-timeout-ms or grpc-timeout); a larger one is refused. */
  readonly maxTimeoutMs: number;
  /** The request from the authenticated, limit-checked body; throws the AppError of a bad one (400, 415). */
  readonly decode: (body: Uint8Array) => Decoded;
  /** The JSON of a unary answer (200); may throw an AppError the surface finds in it (404...). */
  readonly unary: (answer: unknown) => string;
  /** The SSE `data:` of each message of the stream of `request` (the decoded request). */
  readonly stream: (request: unknown) => (message: unknown) => string;
  readonly error: ErrorWriter;
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

/**
 * The CallWire of one HTTP call: the body read up to the limit (413), the HTTP request as signed (method,
 * path, query and the raw body, docs/auth.md), the deadline from `connect-timeout-ms` or `grpc-timeout`
 * (refused before the call when over the maximum), JSON answers (rest-write.ts), server streams as
 * Server-Sent Events (rest-sse.ts: `data: [DONE]` after a stream that finished, `event: error` after one
 * that failed), errors in the surface's shape.
 */
export function httpWire(exchange: Exchange, call: HttpCall): CallWire {
  const requestHeader = requestHeaders(exchange.req.headers);
  const timeout = parseTimeout(requestHeader["connect-timeout-ms"] ?? null, call.maxTimeoutMs);
  const errorOf = call.error;
  let decoded: Decoded | undefined;
  const fail = (opened: InProcessCall, err: ConnectError, unary: boolean): void => {
    const { req, res } = exchange;
    if (res.headersSent) {
      // A stream already started: its end is an error event, never a silent end.
      if (!res.writableEnded) res.end(sseEvent(errorOf(err).body, "error"));
      return;
    }
    // A 413 leaves the body unread: an HTTP/1.1 connection then closes.
    sendError(req, res, callError(err, opened.context, unary, errorOf), isRequestTooLarge(err));
  };
  return {
    name: call.name,
    spec: call.spec,
    init: {
      protocolName: exchange.protocol,
      url: call.url,
      requestHeader,
      timeoutMs: timeout.timeoutMs,
    },
    refusal: timeout.error,
    signed: { method: exchange.method, path: exchange.path, query: exchange.query },
    format: "json",
    read: () => readRequestBody(exchange.req, call.maxBodyBytes),
    message: (body) => body,
    decode(bytes) {
      decoded = call.decode(bytes);
      return decoded;
    },
    unary(opened, answer) {
      const body = call.unary(answer);
      const { context } = opened;
      const headers: OutgoingHttpHeaders = copyHeaders(
        context.responseTrailer,
        copyHeaders(context.responseHeader, {}),
      );
      sendJson(exchange.res, 200, body, headers);
    },
    async stream(opened, messages) {
      const { context } = opened;
      let first: IteratorResult<unknown>;
      try {
        first = await messages.next();
      } catch (err) {
        // An error before the first message (authentication, limits) is an ordinary error answer.
        fail(opened, err as ConnectError, false);
        return;
      }
      const headers = copyHeaders(context.responseHeader, {});
      const text = call.stream(decoded?.request);
      await writeSse(
        exchange.res,
        headers,
        first,
        messages,
        {
          frame: (message) => sseEvent(text(message)),
          errorFrame: (err) => sseEvent(errorOf(err).body, "error"),
          done: sseDone,
        },
        context.signal,
      );
    },
    error(opened, err) {
      const kind = (decoded?.spec ?? call.spec).kind;
      fail(opened, err, kind === "unary");
    },
  };
}
