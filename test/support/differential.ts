import * as http from "node:http";
import * as http2 from "node:http2";
import { composeEdge, type Exchange } from "../../src/edge/index.js";
import { createOnePortServer } from "../../src/transport/one-port.js";
import { captureLog } from "./log-capture.js";

// The machinery of the differential tests (test/server/connect-unary.test.ts,
// test/server/stream-codecs.test.ts): one request on a fresh connection of either HTTP version, answered
// as the plain data two servers' answers are compared by, and a one-port server around a dispatcher.

/** An answer as compared: everything but the `date` header, which differs per response. */
export interface Answer {
  status: number;
  headers: Record<string, string>;
  /** HTTP trailers (gRPC's status over HTTP/2); {} when none were sent. */
  trailers: Record<string, string>;
  /** The body bytes, hex: all frames as sent, whatever the chunking. */
  body: string;
  /** HTTP/2, when asked for: the stream's RST_STREAM code (0: closed cleanly). */
  reset?: number;
}

export interface Request {
  method?: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  /** Declare the body's length (default) or not (HTTP/1.1: chunked; HTTP/2: no content-length). */
  declared?: boolean;
}

function clean(h: http.IncomingHttpHeaders | NodeJS.Dict<string | string[]>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(h)
      .filter(([k]) => k !== "date" && k !== ":status")
      .map(([k, v]) => [k, String(v)]),
  );
}

/**
 * The same request id on every request, so both servers answer with the same `x-request-id` (a generated
 * one would differ), and the comparison still checks that both send it.
 */
const requestId = { "x-request-id": "differential-test" };

/** One request on a fresh HTTP/1.1 connection. */
export function send1(port: number, r: Request): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const declared = r.declared ?? true;
    const headers = {
      ...r.headers,
      ...requestId,
      ...(declared ? { "content-length": String(r.body.length) } : { "transfer-encoding": "chunked" }),
    };
    const req = http.request(
      { host: "127.0.0.1", port, method: r.method ?? "POST", path: r.path, headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: clean(res.headers),
            trailers: clean(res.trailers),
            body: Buffer.concat(chunks).toString("hex"),
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    if (declared) req.end(r.body);
    else {
      // In pieces, so the server sees several chunks.
      for (let i = 0; i < r.body.length; i += 4096) req.write(r.body.subarray(i, i + 4096));
      req.end();
    }
  });
}

/**
 * One request on a fresh h2c connection; the trailers come from the stream's `trailers` event. With
 * `reset`, the answer also says how the stream ended.
 */
export async function send2(url: string, r: Request, options: { reset?: boolean } = {}): Promise<Answer> {
  const session = http2.connect(url);
  session.on("error", () => {});
  try {
    const declared = r.declared ?? true;
    const stream = session.request({
      ":method": r.method ?? "POST",
      ":path": r.path,
      ...r.headers,
      ...requestId,
      ...(declared ? { "content-length": String(r.body.length) } : {}),
    });
    stream.on("error", () => {});
    stream.end(r.body);
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (responseHeaders = h));
    stream.on("trailers", (t: http2.IncomingHttpHeaders) => (trailers = t));
    stream.on("data", (c: Buffer) => chunks.push(c));
    await new Promise<void>((resolve) => stream.on("close", resolve));
    return {
      status: Number(responseHeaders[":status"]),
      headers: clean(responseHeaders),
      trailers: clean(trailers),
      body: Buffer.concat(chunks).toString("hex"),
      ...(options.reset === true ? { reset: stream.rstCode } : {}),
    };
  } finally {
    session.close();
  }
}

/** A length-prefixed message (gRPC, gRPC-Web and Connect streaming envelopes): flags, length, bytes. */
export function envelope(message: Uint8Array, flags = 0): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flags;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/** The envelopes of a body, in order; a trailing partial one is returned as `rest`. */
export function envelopes(body: Buffer): { frames: { flags: number; data: Buffer }[]; rest: Buffer } {
  const frames: { flags: number; data: Buffer }[] = [];
  let i = 0;
  while (i + 5 <= body.length) {
    const length = body.readUInt32BE(i + 1);
    if (i + 5 + length > body.length) break;
    frames.push({ flags: body[i] ?? 0, data: body.subarray(i + 5, i + 5 + length) });
    i += 5 + length;
  }
  return { frames, rest: body.subarray(i) };
}

export interface DiffServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** A one-port server (HTTP/1.1 and h2c, as src/app.ts serves): the edge, no entries, around `dispatch`. */
export async function startEdgeServer(dispatch: (exchange: Exchange) => void): Promise<DiffServer> {
  const handler = composeEdge({ entries: [], dispatch });
  const server = createOnePortServer({ handler, logger: captureLog().logger });
  const { port } = await server.listen(0, "127.0.0.1");
  return { url: `http://127.0.0.1:${port}`, port, close: () => server.close(0) };
}

/** A dispatcher that answers an empty 404 to what `take` does not take. */
export function orBare404(take: (exchange: Exchange) => boolean): (exchange: Exchange) => void {
  return (exchange) => {
    if (take(exchange)) return;
    exchange.res.writeHead(404);
    exchange.res.end();
  };
}
