import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import {
  answerBodyTimeout,
  bodyDeadline,
  finishUploadAfterEarlyAnswer,
  nodeClientError,
} from "../compat/node-http.js";
import { listen } from "../lib/listen.js";
import type { Logger } from "../log/index.js";
import { nonNegativeInt, positiveInt } from "../lib/options.js";

/**
 * A request handler both Node servers accept: the signature of what `connectNodeAdapter` returns
 * (connect-node does not export its name).
 */
export type NodeHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

/** The 24 bytes every HTTP/2 prior-knowledge (h2c) connection starts with (RFC 9113 §3.4). */
const h2Preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

export interface OnePortServerOptions {
  /** One handler for HTTP/1.1 and HTTP/2 compat requests, e.g. what `connectNodeAdapter` returns. */
  readonly handler: NodeHandler;
  readonly logger: Logger;
  /**
   * Time for an HTTP/1.1 client to send its complete request headers. Default 10 000 ms.
   * Must be below `requestTimeoutMs`.
   */
  readonly headersTimeoutMs?: number;
  /**
   * Time for a client to send its whole request (headers and body): a body still incomplete after it is
   * answered 408 `Request Timeout` (gRPC: DEADLINE_EXCEEDED), so a slow sender cannot hold a call open.
   * HTTP/1.1 uses Node's own `requestTimeout`; HTTP/2 a timer per stream. Default 300 000 ms, Cloud Run's
   * request timeout; 0 disables it.
   */
  readonly requestTimeoutMs?: number;
  /**
   * A connection with nothing to do is closed after this long: a new connection that sends no byte, an
   * HTTP/1.1 keep-alive connection between requests, an HTTP/2 session with no open stream. Default 65 000 ms
   * (above the 60 s idle timeouts common in load balancers, so the peer closes first).
   */
  readonly idleTimeoutMs?: number;
  /**
   * Largest request header block accepted: above it HTTP/1.1 answers 431, HTTP/2 advertises it as
   * SETTINGS_MAX_HEADER_LIST_SIZE and refuses the stream. Default 16 384 bytes (Node's own HTTP/1.1 default).
   */
  readonly maxHeaderBytes?: number;
}

/** Node's own HTTP/1.1 default header limit, used for both HTTP versions. */
export const defaultMaxHeaderBytes = 16_384;

export interface OnePortServer {
  /** Starts listening; resolves with the bound port (useful with port 0). Call once. */
  listen(port: number, host?: string): Promise<{ port: number }>;
  /**
   * Graceful shutdown: stops accepting connections, closes idle connections, sends GOAWAY to HTTP/2
   * sessions and `Connection: close` to HTTP/1.1 requests still running, lets in-flight calls finish for up to
   * `graceMs`, then destroys whatever is left. Resolves when every connection is gone. Safe to call twice.
   */
  close(graceMs: number): Promise<void>;
}

/**
 * One TCP port for HTTP/1.1 and cleartext HTTP/2 (docs/architecture.md). Node has no server that speaks both without
 * TLS/ALPN, so a `net` server reads the first bytes of each connection and hands it to an `http2` server
 * when they are the HTTP/2 client preface, to an `http` server otherwise. Both servers call the same
 * handler, so gRPC, gRPC-Web, Connect and REST work on either protocol.
 */
export function createOnePortServer(options: OnePortServerOptions): OnePortServer {
  const headersTimeoutMs = positiveInt(
    "createOnePortServer",
    "headersTimeoutMs",
    options.headersTimeoutMs ?? 10_000,
  );
  const requestTimeoutMs = nonNegativeInt(
    "createOnePortServer",
    "requestTimeoutMs",
    options.requestTimeoutMs ?? 300_000,
  );
  const idleTimeoutMs = positiveInt("createOnePortServer", "idleTimeoutMs", options.idleTimeoutMs ?? 65_000);
  const maxHeaderBytes = positiveInt(
    "createOnePortServer",
    "maxHeaderBytes",
    options.maxHeaderBytes ?? defaultMaxHeaderBytes,
  );
  if (requestTimeoutMs !== 0 && headersTimeoutMs > requestTimeoutMs) {
    throw new Error("createOnePortServer: headersTimeoutMs must not exceed requestTimeoutMs");
  }
  const { handler, logger } = options;

  let closing = false;
  const sockets = new Set<net.Socket>();
  /** Open HTTP/2 sessions and their open stream counts (Node does not expose the count). */
  const sessions = new Map<http2.ServerHttp2Session, number>();
  /** HTTP/1.1 requests in flight per socket, so close() can tell idle keep-alive sockets from busy ones. */
  const h1InFlight = new Map<net.Socket, number>();
  /** The response being written on each HTTP/1.1 socket (one at a time: no pipelining is answered early). */
  const h1Current = new WeakMap<net.Socket, http.ServerResponse>();
  const h2Sockets = new WeakSet<net.Socket>();

  const h1 = http.createServer(
    {
      maxHeaderSize: maxHeaderBytes,
      headersTimeout: headersTimeoutMs,
      requestTimeout: requestTimeoutMs,
      keepAliveTimeout: idleTimeoutMs,
      // Node checks headersTimeout/requestTimeout on this interval; its 30 s default would let a slow client
      // hold a connection long past headersTimeout.
      connectionsCheckingInterval: Math.min(1_000, headersTimeoutMs),
    },
    (req, res) => {
      const socket = req.socket;
      h1InFlight.set(socket, (h1InFlight.get(socket) ?? 0) + 1);
      h1Current.set(socket, res);
      // Once shutting down, no request may keep a keep-alive connection open after its answer.
      if (closing) res.shouldKeepAlive = false;
      res.once("close", () => {
        if (h1Current.get(socket) === res) h1Current.delete(socket);
        // When the client went away first, the socket's own "close" (which forgets it) has already run:
        // writing it back would keep every cancelled call's socket and response alive for good.
        if (socket.destroyed) {
          h1InFlight.delete(socket);
          return;
        }
        const left = (h1InFlight.get(socket) ?? 1) - 1;
        h1InFlight.set(socket, left);
        if (closing && left === 0) socket.end();
      });
      handler(req, res);
    },
  );
  h1.on("clientError", (err: NodeJS.ErrnoException, socket: net.Socket) => {
    const res = h1Current.get(socket);
    if (err.code === "ERR_HTTP_REQUEST_TIMEOUT" && res !== undefined && !res.headersSent) {
      // The body deadline over a request already handed to the handler: answered through its response, so
      // the exchange sees the 408 (one access line) and the handler's read ends as a body that stopped.
      answerBodyTimeout(res, socket);
      return;
    }
    nodeClientError(err, socket, res);
  });
  // Connections reach `h1` through emit("connection") and it never listens itself, but Node starts the
  // timer that enforces headersTimeout/requestTimeout on "listening"; tell it.
  h1.emit("listening");

  const h2 = http2.createServer(
    {
      settings: { maxHeaderListSize: maxHeaderBytes },
    },
    (req, res) => {
      // nghttp2 advertises maxHeaderListSize but does not refuse a larger header list: the edge does
      // (src/edge/header-limit.ts), so the answer gets its access line.
      if (isUnaryBody(req.headers["content-type"])) finishUploadAfterEarlyAnswer(req, res, idleTimeoutMs);
      if (requestTimeoutMs !== 0 && !req.readableEnded) bodyDeadline(req, res, requestTimeoutMs);
      handler(req, res);
    },
  );
  h2.on("session", (session: http2.ServerHttp2Session) => {
    sessions.set(session, 0);
    session.once("close", () => sessions.delete(session));
    session.on("stream", (stream: http2.ServerHttp2Stream) => {
      sessions.set(session, (sessions.get(session) ?? 0) + 1);
      stream.once("close", () => sessions.set(session, (sessions.get(session) ?? 1) - 1));
    });
    // An h2 session is idle when no stream is open: Watch streams and long responses stay untouched.
    session.setTimeout(idleTimeoutMs, () => {
      if (sessions.get(session) === 0) session.close();
    });
    if (closing) session.close();
  });
  h2.on("sessionError", (err) => logger.debug({ err: String(err) }, "http2 session error"));

  const server = net.createServer((socket) => {
    if (closing) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      h1InFlight.delete(socket);
    });
    sniff(socket);
  });

  /** Reads until the bytes either are the HTTP/2 preface or cannot be; then hands the socket over. */
  function sniff(socket: net.Socket): void {
    let head = Buffer.alloc(0);
    const onError = (err: Error) =>
      logger.debug({ err: err.message }, "connection error before first request");
    const onEnd = () => socket.destroy();
    const done = (target: "h1" | "h2") => {
      socket.off("readable", onReadable);
      socket.off("error", onError);
      socket.off("end", onEnd);
      socket.setTimeout(0);
      socket.unshift(head);
      if (target === "h2") h2Sockets.add(socket);
      (target === "h2" ? h2 : h1).emit("connection", socket);
    };
    const onReadable = () => {
      let chunk: unknown;
      while ((chunk = socket.read()) !== null) {
        head = Buffer.concat([head, chunk as Buffer]);
        const n = Math.min(head.length, h2Preface.length);
        if (!head.subarray(0, n).equals(h2Preface.subarray(0, n))) return done("h1");
        if (n === h2Preface.length) return done("h2");
        // A prefix of the preface: wait for the rest (it may arrive split over several segments).
      }
    };
    socket.on("error", onError);
    socket.on("end", onEnd);
    socket.on("readable", onReadable);
    // A client that connects and sends nothing (or half a preface) must not hold the socket forever.
    socket.setTimeout(idleTimeoutMs, () => {
      logger.debug("closing connection that sent no request");
      socket.destroy();
    });
  }

  let closed: Promise<void> | undefined;

  return {
    async listen(port, host) {
      const bound = await listen(server, port, host);
      // Only now: a failed listen (EADDRINUSE) is the caller's rejection to report, not a log line.
      server.on("error", (err) => logger.error({ err: String(err) }, "listener error"));
      return bound;
    },

    close(graceMs) {
      if (!Number.isSafeInteger(graceMs) || graceMs < 0) {
        return Promise.reject(new Error(`close: graceMs must be a non-negative integer, got ${graceMs}`));
      }
      closed ??= shutdown(graceMs);
      return closed;
    },
  };

  async function shutdown(graceMs: number): Promise<void> {
    closing = true;
    const listenerClosed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const session of sessions.keys()) session.close();
    for (const socket of sockets) {
      // Sockets not yet handed over, and HTTP/1.1 keep-alive sockets between requests, have nothing in flight.
      const inFlight = h1InFlight.get(socket);
      if (inFlight === 0 || (inFlight === undefined && !h2Sockets.has(socket))) socket.destroy();
    }
    const drained = new Promise<void>((resolve) => {
      const check = () => {
        if (sockets.size === 0) resolve();
      };
      check();
      for (const socket of sockets) socket.once("close", check);
    });
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
    });
    await Promise.race([drained, deadline]);
    clearTimeout(timer);
    for (const session of sessions.keys()) session.destroy();
    for (const socket of sockets) socket.destroy();
    // Stops Node's connection-checking timer of the never-listening HTTP/1.1 server.
    h1.close();
    await listenerClosed;
    await drained;
  }
}

/**
 * Request content types whose body is one message (REST JSON, Connect unary). For them an answer means the
 * handler is done with the body; streaming protocols (gRPC, Connect streaming) may still be reading.
 */
function isUnaryBody(contentType: string | undefined): boolean {
  return contentType === undefined || !/^application\/(grpc|connect\+)/i.test(contentType);
}
