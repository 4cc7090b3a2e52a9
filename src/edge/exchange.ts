import { Code, ConnectError, createContextKey } from "@connectrpc/connect";
import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import { codeFromHttpStatus } from "@connectrpc/connect/protocol-connect";
import { codeTable, httpStatusOfError } from "../errors/index.js";
import { whenRecordSettled, type AccessRecord } from "./access-record.js";
import { requestIdOf } from "./request-id.js";

type NodeHandlerFn = NonNullable<ConnectNodeAdapterOptions["fallback"]>;
/** An HTTP/1.1 `IncomingMessage` or an HTTP/2 compat `Http2ServerRequest` (connect-node's own type). */
export type NodeServerRequest = Parameters<NodeHandlerFn>[0];
/** An HTTP/1.1 `ServerResponse` or an HTTP/2 compat `Http2ServerResponse` (connect-node's own type). */
export type NodeServerResponse = Parameters<NodeHandlerFn>[1];

/** The surfaces served on the port; `openai` is the OpenAI-compatible one (`/openai/{product}/v1/...`). */
export type Protocol = "grpc" | "grpc-web" | "connect" | "rest" | "openai" | "anthropic";

/**
 * How a request ended, as the access line and metrics report it. `status` is the HTTP status of the error
 * table (docs/architecture.md): the one sent, or for protocols that answer errors with HTTP 200 (gRPC,
 * gRPC-Web, Connect streams, Server-Sent Events) the one the error stands for. A client that went away
 * (cancel, RST_STREAM, closed connection) is 499 CANCELLED; a call cut by the server at the end of the
 * shutdown grace is 503 UNAVAILABLE with `cut: "server"`.
 */
export interface Outcome {
  readonly status: number;
  /** "OK" or the gRPC code name ("CANCELLED", "UNAVAILABLE", "RESOURCE_EXHAUSTED", ...). */
  readonly code: string;
  readonly cut: "client" | "server" | undefined;
  readonly latencySeconds: number;
}

/**
 * One HTTP request on the port, from the moment the edge gets it to the close of its response. Created by
 * the edge before any entry runs; the dispatcher and the call fill in what they learn.
 */
export interface Exchange {
  readonly req: NodeServerRequest;
  readonly res: NodeServerResponse;
  /** HTTP method, upper case. */
  readonly method: string;
  /** The path as sent (still percent-encoded), without the query. */
  readonly path: string;
  /** The raw query without the leading "?" ("" when none). */
  readonly query: string;
  readonly httpVersion: "1.1" | "2";
  /** performance.now() when the edge got the request. */
  readonly startedAt: number;
  /**
   * The request id: the caller's `X-Request-Id` when sane, else a random UUID (src/edge/request-id.ts).
   * Sent back as `x-request-id` on every answer, and in `record` so every log line of the request has it.
   */
  readonly requestId: string;
  /**
   * The socket's peer address, read when the request arrives (by the time the access line is written the
   * socket may be gone, and with it the address).
   */
  readonly peerAddress: string | undefined;
  /**
   * Guessed from the content type before any entry runs; the dispatcher sets the final value when it
   * routes, and an entry that serves a surface itself sets its own.
   */
  protocol: Protocol;
  /** "package.Service/Method" once routed to an RPC; undefined otherwise (unknown route, preflight, ...). */
  rpc: string | undefined;
  /** What the call learns: product, model, caller, upstream latency, token usage (the AccessRecord). */
  readonly record: AccessRecord;
  /** The wire error of the call, set by the one converter (src/call/wire-error.ts); undefined on success. */
  error: ConnectError | undefined;
  /**
   * The gRPC status the response carried in its trailers or end-of-stream message, when the call failed
   * where no interceptor saw it (set by the Connect dispatcher). Undefined when unknown or OK.
   */
  wireCode: Code | undefined;
  /**
   * Calls `listener` once, when the response is over (finished, reset or cut), with the outcome and this
   * exchange (so a listener shared by all requests needs no closure per request).
   */
  onEnd(listener: EndListener): void;
}

/** See {@link Exchange.onEnd}. */
export type EndListener = (outcome: Outcome, exchange: Exchange) => void;

export type EdgeHandler = (exchange: Exchange) => void;

/**
 * An entry of the edge list: wraps the next handler. Built by a factory (`createXEdge(options)`) that
 * checks its options once. An entry may answer the request itself by writing to `exchange.res` and not
 * calling `next`; it never awaits `next` (Node handlers are fire and forget) but observes the end through
 * `exchange.onEnd`.
 */
export type EdgeEntry = (next: EdgeHandler) => EdgeHandler;

/** The exchange of a call, in the call's context values (every dispatch path sets it). */
export const exchangeKey = createContextKey<Exchange | undefined>(undefined, {
  description: "the HTTP exchange of a call",
});

export interface EdgeOptions {
  /** Outermost first. */
  readonly entries: readonly EdgeEntry[];
  /** The innermost handler: routes the request to a codec of the call pipeline or the fallback lane. */
  readonly dispatch: EdgeHandler;
  /**
   * Aborted at the end of the shutdown grace: a response that is not over by then was cut by the server,
   * not by its client.
   */
  readonly cutSignal?: AbortSignal;
}

/** A Node request listener for both HTTP versions. */
export type NodeListener = (req: NodeServerRequest, res: NodeServerResponse) => void;

/** Composes the edge list once; returns the listener the one-port server calls for every request. */
export function composeEdge(options: EdgeOptions): NodeListener {
  const { cutSignal } = options;
  let handler = options.dispatch;
  for (let i = options.entries.length - 1; i >= 0; i--) {
    const entry = options.entries[i];
    if (entry !== undefined) handler = entry(handler);
  }
  const first = handler;
  return (req, res) => {
    const exchange = createExchange(req, res, cutSignal);
    first(exchange);
  };
}

/**
 * The TCP peer of a request. Over HTTP/2 through the session's socket, whose proxy Node makes once per
 * connection, rather than the request's, which it makes for every stream.
 */
function peerAddressOf(req: NodeServerRequest): string | undefined {
  return "stream" in req ? req.stream.session?.socket.remoteAddress : req.socket.remoteAddress;
}

/** How long a closed response's end waits for its call to record its usage (an estimate is quick). */
const settleWaitMs = 5_000;

/** Builds the exchange of one request. */
function createExchange(req: NodeServerRequest, res: NodeServerResponse, cutSignal?: AbortSignal): Exchange {
  const url = req.url ?? "/";
  const q = url.indexOf("?");
  const listeners: EndListener[] = [];
  const requestId = requestIdOf(req.headers["x-request-id"]);
  // Set before any entry or handler writes, so every answer carries it: errors, 431s, preflights, gRPC.
  res.setHeader("x-request-id", requestId);
  const exchange: Exchange = {
    req,
    res,
    method: (req.method ?? "GET").toUpperCase(),
    path: q < 0 ? url : url.slice(0, q),
    query: q < 0 ? "" : url.slice(q + 1),
    httpVersion: req.httpVersionMajor === 2 ? "2" : "1.1",
    startedAt: performance.now(),
    requestId,
    peerAddress: peerAddressOf(req),
    protocol: guessProtocol(req.headers["content-type"]),
    rpc: undefined,
    record: { requestId },
    error: undefined,
    wireCode: undefined,
    onEnd(listener) {
      listeners.push(listener);
    },
  };
  // Whether the response was cut before the server ended it: a closed HTTP/1.1 connection, or an HTTP/2
  // stream the client reset first. A reset also marks the compat response finished and lets a handler
  // still call end() on it (connect then answers "missing input message"), so over HTTP/2 what tells is
  // the stream's reset code when our end is done: 0 if the answer went out before any reset (a client
  // such as curl may reset after a complete answer while it is still uploading).
  let reset = false;
  if ("stream" in req) {
    res.once("finish", () => {
      const code = req.stream.rstCode;
      // An error status the server sent in full (413, 415, ... answered before the body was read) stays
      // that status when the client resets afterwards to stop its upload.
      reset = code !== undefined && code !== 0 && res.statusCode < 400;
    });
  }
  res.once("close", () => {
    if (listeners.length === 0) return;
    const outcome = outcomeOf(exchange, reset || !res.writableEnded, cutSignal?.aborted === true);
    const end = () => {
      for (const listener of listeners) listener(outcome, exchange);
    };
    // A call cut short may still be settling its usage (src/edge/access-record.ts): its line waits for it.
    const settling = whenRecordSettled(exchange.record, settleWaitMs);
    if (settling === undefined) end();
    else void settling.then(end);
  });
  return exchange;
}

function guessProtocol(contentType: string | undefined): Protocol {
  if (contentType === undefined || !contentType.startsWith("application/")) return "rest";
  if (contentType.startsWith("application/grpc-web")) return "grpc-web";
  if (contentType.startsWith("application/grpc")) return "grpc";
  if (contentType.startsWith("application/connect+") || contentType.startsWith("application/proto")) {
    return "connect";
  }
  return "rest";
}

function outcomeOf(exchange: Exchange, cut: boolean, afterGrace: boolean): Outcome {
  const latencySeconds = (performance.now() - exchange.startedAt) / 1000;
  const { error } = exchange;
  const serverCut = error !== undefined && isShutdownCut(error);
  if (serverCut || (afterGrace && cut)) {
    return { status: 503, code: "UNAVAILABLE", cut: "server", latencySeconds };
  }
  if (cut) return { status: 499, code: "CANCELLED", cut: "client", latencySeconds };
  if (error !== undefined) {
    return {
      status: httpStatusOfError(error),
      code: codeTable[error.code].name,
      cut: undefined,
      latencySeconds,
    };
  }
  const sent = exchange.res.statusCode;
  // 408 is the body deadline (README error table: DEADLINE_EXCEEDED); connect maps it to UNKNOWN.
  if (sent === 408) return { status: sent, code: "DEADLINE_EXCEEDED", cut: undefined, latencySeconds };
  if (sent >= 400)
    return { status: sent, code: codeTable[codeFromHttpStatus(sent)].name, cut: undefined, latencySeconds };
  const wireCode =
    exchange.wireCode ?? (exchange.protocol === "grpc" ? trailersOnlyCode(exchange) : undefined);
  if (wireCode !== undefined) {
    const row = codeTable[wireCode];
    return { status: row.http, code: row.name, cut: undefined, latencySeconds };
  }
  return { status: sent, code: "OK", cut: undefined, latencySeconds };
}

/**
 * The status of a gRPC trailers-only answer written outside any call (the HTTP/2 body deadline of
 * src/transport/one-port.ts answers DEADLINE_EXCEEDED so): its `grpc-status` header, when not OK.
 */
function trailersOnlyCode(exchange: Exchange): Code | undefined {
  const value = exchange.res.getHeader("grpc-status");
  const code = typeof value === "string" ? Number(value) : undefined;
  return code !== undefined && Number.isInteger(code) && code > 0 && code <= 16 ? code : undefined;
}

/** The error a call gets when the shutdown grace ends under it (see src/app.ts). */
export const shutdownCutError = new ConnectError(
  "The server is shutting down; retry the call",
  Code.Unavailable,
);

function isShutdownCut(error: ConnectError): boolean {
  return error === shutdownCutError || error.cause === shutdownCutError;
}
