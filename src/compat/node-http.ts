import * as http2 from "node:http2";
import type * as http from "node:http";
import type * as net from "node:net";

// What the one-port server (src/transport/one-port.ts) changes in, or copies of, Node's HTTP servers: each a
// runtime patch or a copy of Node's own behaviour, pinned by test/server/one-port.test.ts and
// test/e2e/body-deadline.test.ts. Re-check them when Node is upgraded.

/**
 * An answer sent before the request body was read in full (405, 413, 415, ...) must still reach the client.
 * RFC 9113 §8.1 lets a server answer early and then reset the stream with NO_ERROR to stop the upload, and
 * that reset comes at once: connect-node sends it after every HTTP/2 response whose request is still open,
 * Node after a response to a request nobody read. A client that gets the reset before it has read the
 * answer loses it: curl 7.88 (Debian 12's) exits 92 "Stream error in the HTTP/2 framing layer", or 52
 * "Empty reply from server" when its upload had not begun. Not resetting at all is no better: curl stops
 * uploading once it has a final status and then waits for the server to close the stream. So, for a request
 * with a unary body:
 * - when the handler writes its answer's head, the rest of the body is read and dropped, so the upload
 *   never stalls on flow control;
 * - a NO_ERROR close asked for after the answer ended, while the client is still sending, waits for a PING
 *   round trip: the client acknowledges a PING only after reading every frame sent before it, the answer
 *   included. A client that finishes its upload first closes the stream with its END_STREAM, without any
 *   reset. More than `maxDrainBytes` of body, or no PING acknowledgement within `idleMs` (the server's idle
 *   timeout), closes at once.
 * Other closes (error codes, a close before the answer ended, destroy) are untouched.
 */
export function finishUploadAfterEarlyAnswer(
  req: http2.Http2ServerRequest,
  res: http2.Http2ServerResponse,
  idleMs: number,
): void {
  const { stream } = req;
  const close = stream.close.bind(stream);
  const closeNow = () => close(http2.constants.NGHTTP2_NO_ERROR);
  let draining = false;
  let held = false;

  const writeHead = res.writeHead.bind(res) as (...args: unknown[]) => http2.Http2ServerResponse;
  res.writeHead = (...args: unknown[]) => {
    if (!draining && !req.readableEnded) {
      draining = true;
      let seen = 0;
      req.on("data", (chunk: Buffer) => {
        seen += chunk.length;
        if (seen > maxDrainBytes) closeNow();
      });
      req.resume();
    }
    return writeHead(...args);
  };

  stream.close = (code = http2.constants.NGHTTP2_NO_ERROR, callback?: () => void) => {
    if (code !== http2.constants.NGHTTP2_NO_ERROR || !draining || !res.writableEnded || stream.closed) {
      close(code, callback);
      return;
    }
    if (callback !== undefined) stream.once("close", callback);
    if (held) return;
    held = true;
    const timer = setTimeout(closeNow, idleMs);
    stream.once("close", () => clearTimeout(timer));
    afterPingRoundTrip(stream.session, closeNow);
  };
}

/** Per HTTP/2 session: the PING in flight, and what runs after the next one. */
interface PingQueue {
  inFlight: boolean;
  next: (() => void)[];
}

const pingQueues = new WeakMap<http2.Http2Session, PingQueue>();

/**
 * Runs `fn` once the peer has acknowledged a PING sent after this call, so it has read every frame the
 * server sent before. One PING at a time per session, for every caller waiting (nghttp2 caps unanswered
 * PINGs); `fn` also runs when the session is closing or gone, as nothing is left to wait for then.
 */
function afterPingRoundTrip(session: http2.Http2Session | undefined, fn: () => void): void {
  if (session === undefined || session.destroyed) {
    fn();
    return;
  }
  let queue = pingQueues.get(session);
  if (queue === undefined) {
    queue = { inFlight: false, next: [] };
    pingQueues.set(session, queue);
  }
  queue.next.push(fn);
  if (!queue.inFlight) sendPing(session, queue);
}

function sendPing(session: http2.Http2Session, queue: PingQueue): void {
  const waiting = queue.next;
  queue.next = [];
  const done = () => {
    queue.inFlight = false;
    for (const fn of waiting) fn();
    if (queue.next.length > 0 && !session.destroyed) sendPing(session, queue);
    else for (const fn of queue.next.splice(0)) fn();
  };
  queue.inFlight = true;
  // false: not sent (too many unanswered PINGs); on a closing session Node calls back on its own.
  if (session.ping(done) === false) done();
}

/**
 * Node's `requestTimeout` fired on an HTTP/1.1 request whose handler runs: answer 408 on its response and
 * close the connection (the rest of the body is never read).
 */
export function answerBodyTimeout(res: http.ServerResponse, socket: net.Socket): void {
  res.shouldKeepAlive = false;
  res.writeHead(408, { "content-type": "text/plain; charset=utf-8", connection: "close" });
  res.end("Request Timeout", () => socket.destroy());
}

/** Node's own answers to a client error (lib/_http_server.js, `socketOnError`), for every other case. */
const clientErrorAnswers: Readonly<Record<string, string>> = {
  HPE_HEADER_OVERFLOW: "431 Request Header Fields Too Large",
  HPE_CHUNK_EXTENSIONS_OVERFLOW: "413 Payload Too Large",
  ERR_HTTP_REQUEST_TIMEOUT: "408 Request Timeout",
};

/**
 * What Node does on a client error when no `clientError` listener is registered: a raw error answer if
 * nothing of a response was written yet, then the socket is destroyed.
 */
export function nodeClientError(
  err: NodeJS.ErrnoException,
  socket: net.Socket,
  res: http.ServerResponse | undefined,
): void {
  if (socket.writable && (res === undefined || !res.headersSent)) {
    const status = clientErrorAnswers[err.code ?? ""] ?? "400 Bad Request";
    socket.write(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
  }
  socket.destroy(err);
}

/** Most bytes of an unread request body read and dropped after the answer; beyond it the stream is reset. */
const maxDrainBytes = 16 * 1024 * 1024;

/**
 * HTTP/2 has no `requestTimeout`: a stream whose body is still incomplete after `ms` is answered as Node
 * answers HTTP/1.1 (408), or for gRPC with DEADLINE_EXCEEDED in a trailers-only response, and then reset
 * (NO_ERROR: "stop sending"), which ends the handler's read of the body.
 */
export function bodyDeadline(
  req: http2.Http2ServerRequest,
  res: http2.Http2ServerResponse,
  ms: number,
): void {
  const timer = setTimeout(() => {
    if (req.readableEnded || res.stream.closed) return;
    if (!res.headersSent) {
      const contentType = req.headers["content-type"] ?? "";
      if (contentType.startsWith("application/grpc") && !contentType.startsWith("application/grpc-web")) {
        res.writeHead(200, {
          "content-type": contentType,
          "grpc-status": "4",
          "grpc-message": "Request body not received in time",
        });
      } else {
        res.writeHead(408, { "content-type": "text/plain; charset=utf-8" });
        res.write("Request Timeout");
      }
      res.end();
    }
    res.stream.close(http2.constants.NGHTTP2_NO_ERROR);
  }, ms);
  timer.unref();
  req.once("end", () => clearTimeout(timer));
  res.once("close", () => clearTimeout(timer));
}
