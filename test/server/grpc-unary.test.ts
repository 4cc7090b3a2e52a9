import * as http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { Code, ConnectError, type ConnectRouter, type ServiceImplSpec } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BookQuerySchema,
  FailRequestSchema,
  LibraryService,
  WatchShelfRequestSchema,
} from "../../gen/testing/transcode/v1/transcode_pb.js";
import { recordServices } from "../../src/services/record-services.js";
import { composeEdge, type Exchange as HttpExchange } from "../../src/edge/index.js";
import { captureLog } from "../support/log-capture.js";
import { createWireErrorInterceptor } from "../../src/call/wire-error.js";
import { createConnectDispatch } from "../../src/protocols/fallback/connect-node-lane.js";
import { createCallPipeline } from "../../src/call/pipeline.js";
import { createGrpcCodec } from "../../src/protocols/grpc/grpc-codec.js";

// The gRPC codec (unary) must answer exactly as connect-node's gRPC handler would. Every case below is
// sent, as raw HTTP/2, to two servers built from the same service and interceptors: the server's Connect
// path alone (connect-node's handlers behind src/protocols/fallback/connect-node-lane.ts; the reference) and the fast
// path in front of it. Status, headers, body and trailers must be identical, and the codec must have
// taken the call (or left it, for what it does not serve).

const readMaxBytes = 1024;
const maxTimeoutMs = 5_000;

function routes(router: ConnectRouter): void {
  router.service(LibraryService, {
    getBook(request, ctx) {
      ctx.responseHeader.set("x-seen-name", request.name);
      ctx.responseTrailer.set("x-trailer", "t");
      if (request.name === "big")
        return { ...request, tags: Array.from({ length: 200 }, (_, i) => `tag ${i}`) };
      return request;
    },
    fail(request) {
      switch (request.kind) {
        case "details":
          throw new ConnectError("no: a=b, 100% café", Code.FailedPrecondition, { "x-meta": "m" }, [
            { desc: ErrorInfoSchema, value: { reason: "R", domain: "d" } },
          ]);
        case "plain":
          throw new Error("not a ConnectError");
        default:
          return request;
      }
    },
    async ping(request, ctx) {
      // Waits for the deadline (or cancellation), then reports why.
      await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
      throw ConnectError.from(ctx.signal.reason);
    },
    watchShelf(request) {
      return (async function* () {
        for (let i = 0; i < request.count; i++) {
          await Promise.resolve();
          yield { name: `${request.shelf}/${i}` };
        }
      })();
    },
    createBook: (r) => r,
    updateBook: (r) => r,
    deleteBook: (r) => r,
    archiveBook: (r) => r,
    searchBooks: (r) => r,
    getFile: (r) => r,
    listBooks: () => ({}),
    hidden: (r) => r,
  });
}

interface Server {
  url: string;
  taken: number;
  close(): Promise<void>;
}

async function listen(handler: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void) {
  const server = http2.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no address");
  return { server, url: `http://127.0.0.1:${address.port}` };
}

const interceptors = [createWireErrorInterceptor()];
const adapterOptions = {
  grpc: true,
  grpcWeb: true,
  connect: true,
  readMaxBytes,
  maxTimeoutMs,
  interceptors,
  acceptCompression: [compressionGzip, compressionBrotli],
  logger: captureLog().logger,
};

/** A Node listener of the edge with no entries around `dispatch`; what it leaves gets a bare 404. */
const listener = (dispatch: (exchange: HttpExchange) => boolean) =>
  composeEdge({
    entries: [],
    dispatch: (exchange) => {
      if (dispatch(exchange)) return;
      exchange.res.writeHead(404);
      exchange.res.end();
    },
  });

async function startReference(): Promise<Server> {
  const connect = createConnectDispatch({ ...adapterOptions, routes });
  const { server, url } = await listen(listener(connect));
  return { url, taken: 0, close: () => new Promise((r) => server.close(() => r())) };
}

async function startFastPath(): Promise<Server> {
  const services: ServiceImplSpec[] = [];
  const connect = createConnectDispatch({
    ...adapterOptions,
    routes: (router) => routes(recordServices(router, services)),
  });
  // The server's gRPC codec on the call pipeline (src/protocols/dispatch.ts composes them the same way).
  const codec = createGrpcCodec({
    services,
    readMaxBytes,
    writeMaxBytes: 1024 * 1024,
    maxTimeoutMs,
    acceptCompression: [compressionGzip, compressionBrotli],
  });
  const pipeline = createCallPipeline({ interceptors, logger: captureLog().logger });
  const state = { taken: 0 };
  const { server, url } = await listen(
    listener((exchange) => {
      const wire = codec(exchange);
      if (wire === undefined) return connect(exchange);
      state.taken++;
      void pipeline.run(exchange, wire);
      return true;
    }),
  );
  return {
    url,
    get taken() {
      return state.taken;
    },
    close: () => new Promise((r) => server.close(() => r())),
  };
}

interface Exchange {
  status: number;
  headers: Record<string, string>;
  trailers: Record<string, string>;
  body: string;
}

/** One raw HTTP/2 request; headers and trailers without the ones that differ per response (date). */
async function exchange(
  url: string,
  path: string,
  headers: Record<string, string>,
  body: Buffer,
): Promise<Exchange> {
  const session = http2.connect(url);
  session.on("error", () => {});
  try {
    // One request id for both servers, so both answer with the same `x-request-id` (and both must send it).
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      "x-request-id": "grpc-unary-test",
      ...headers,
    });
    stream.end(body);
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (responseHeaders = h));
    stream.on("trailers", (t: http2.IncomingHttpHeaders) => (trailers = t));
    stream.on("data", (c: Buffer) => chunks.push(c));
    await new Promise<void>((resolve, reject) => {
      stream.on("close", resolve);
      stream.on("error", reject);
    });
    const clean = (h: http2.IncomingHttpHeaders) =>
      Object.fromEntries(
        Object.entries(h)
          .filter(([k]) => k !== "date" && k !== ":status")
          .map(([k, v]) => [k, String(v)]),
      );
    return {
      status: Number(responseHeaders[":status"]),
      headers: clean(responseHeaders),
      trailers: clean(trailers),
      body: Buffer.concat(chunks).toString("hex"),
    };
  } finally {
    session.close();
  }
}

function frame(message: Uint8Array, flags = 0): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flags;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

const getBook = "/testing.transcode.v1.LibraryService/GetBook";
const fail = "/testing.transcode.v1.LibraryService/Fail";
const ping = "/testing.transcode.v1.LibraryService/Ping";
const grpc = { "content-type": "application/grpc", te: "trailers" };
const book = (name: string) => toBinary(BookQuerySchema, create(BookQuerySchema, { name, limit: 3 }));
const failing = (kind: string) => toBinary(FailRequestSchema, create(FailRequestSchema, { kind }));

interface Case {
  name: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  /** Whether the codec serves it (false: it must hand the request to connect). */
  fast: boolean;
}

const cases: Case[] = [
  { name: "a plain call", path: getBook, headers: grpc, body: frame(book("a")), fast: true },
  {
    name: "application/grpc+proto, with metadata",
    path: getBook,
    headers: { ...grpc, "content-type": "application/grpc+proto", "x-custom": "v" },
    body: frame(book("b")),
    fast: true,
  },
  { name: "an empty message", path: getBook, headers: grpc, body: frame(new Uint8Array(0)), fast: true },
  { name: "no message at all", path: getBook, headers: grpc, body: Buffer.alloc(0), fast: true },
  { name: "half an envelope header", path: getBook, headers: grpc, body: Buffer.from([0, 0, 0]), fast: true },
  {
    name: "a truncated message",
    path: getBook,
    headers: grpc,
    body: frame(book("a")).subarray(0, 8),
    fast: true,
  },
  {
    name: "two messages",
    path: getBook,
    headers: grpc,
    body: Buffer.concat([frame(book("a")), frame(book("b"))]),
    fast: true,
  },
  {
    name: "a message and half of another",
    path: getBook,
    headers: grpc,
    body: Buffer.concat([frame(book("a")), frame(book("b")).subarray(0, 7)]),
    fast: true,
  },
  {
    name: "a message over readMaxBytes",
    path: getBook,
    headers: grpc,
    body: frame(book("x".repeat(2000))),
    fast: true,
  },
  {
    name: "bytes that are not the message",
    path: getBook,
    headers: grpc,
    body: frame(Buffer.from([0xff, 0xff, 0xff])),
    fast: true,
  },
  {
    name: "compressed flag without grpc-encoding",
    path: getBook,
    headers: grpc,
    body: frame(book("a"), 1),
    fast: true,
  },
  {
    name: "a gzip request",
    path: getBook,
    headers: { ...grpc, "grpc-encoding": "gzip" },
    body: frame(gzipSync(book("gz")), 1),
    fast: true,
  },
  {
    name: "gzip declared, message sent uncompressed",
    path: getBook,
    headers: { ...grpc, "grpc-encoding": "gzip" },
    body: frame(book("plain")),
    fast: true,
  },
  {
    name: "an unknown grpc-encoding",
    path: getBook,
    headers: { ...grpc, "grpc-encoding": "snappy" },
    body: frame(book("a")),
    fast: true,
  },
  {
    name: "a large answer to a caller that accepts gzip (grpc-js sends this header)",
    path: getBook,
    headers: { ...grpc, "grpc-accept-encoding": "identity,deflate,gzip" },
    body: frame(book("big")),
    fast: true,
  },
  {
    name: "a small answer to a caller that accepts gzip",
    path: getBook,
    headers: { ...grpc, "grpc-accept-encoding": "gzip" },
    body: frame(book("small")),
    fast: true,
  },
  {
    name: "an error with details and metadata",
    path: fail,
    headers: grpc,
    body: frame(failing("details")),
    fast: true,
  },
  {
    name: "a thrown non-Connect error",
    path: fail,
    headers: grpc,
    body: frame(failing("plain")),
    fast: true,
  },
  {
    name: "a deadline that passes",
    path: ping,
    headers: { ...grpc, "grpc-timeout": "50m" },
    body: frame(failing("")),
    fast: true,
  },
  {
    name: "a deadline over maxTimeoutMs",
    path: getBook,
    headers: { ...grpc, "grpc-timeout": "10S" },
    body: frame(book("a")),
    fast: true,
  },
  {
    name: "a malformed grpc-timeout",
    path: getBook,
    headers: { ...grpc, "grpc-timeout": "soon" },
    body: frame(book("a")),
    fast: true,
  },
  {
    name: "application/grpc+json (taken by the codec)",
    path: getBook,
    headers: { ...grpc, "content-type": "application/grpc+json" },
    body: frame(Buffer.from(JSON.stringify({ name: "j" }))),
    fast: true,
  },
  {
    name: "gRPC-Web (taken by the codec)",
    path: getBook,
    headers: { "content-type": "application/grpc-web+proto" },
    body: frame(book("w")),
    fast: true,
  },
  {
    name: "a server-streaming method (taken by the codec)",
    path: "/testing.transcode.v1.LibraryService/WatchShelf",
    headers: grpc,
    body: frame(toBinary(WatchShelfRequestSchema, create(WatchShelfRequestSchema, { shelf: "s", count: 2 }))),
    fast: true,
  },
  {
    name: "an unknown method (left to connect)",
    path: "/testing.transcode.v1.LibraryService/Nope",
    headers: grpc,
    body: frame(book("a")),
    fast: false,
  },
];

describe("gRPC codec (unary) answers exactly as connect-node", () => {
  let reference: Server;
  let fast: Server;
  beforeAll(async () => {
    reference = await startReference();
    fast = await startFastPath();
  });
  afterAll(async () => {
    await reference.close();
    await fast.close();
  });

  it.each(cases)("$name", async ({ path, headers, body, fast: takes }) => {
    const before = fast.taken;
    const expected = await exchange(reference.url, path, headers, body);
    const actual = await exchange(fast.url, path, headers, body);
    expect(actual).toEqual(expected);
    expect(fast.taken - before).toBe(takes ? 1 : 0);
  });

  it("the cases cover success, every framing fault, compression and errors", async () => {
    // A guard against a reference that fails everything: the comparisons above must include real answers.
    const ok = await exchange(fast.url, getBook, grpc, frame(book("a")));
    expect(ok.trailers["grpc-status"]).toBe("0");
    expect(fromBinary(BookQuerySchema, Buffer.from(ok.body, "hex").subarray(5))).toMatchObject({
      name: "a",
      limit: 3,
    });
    expect(ok.headers["x-seen-name"]).toBe("a");
    expect(ok.trailers["x-trailer"]).toBe("t");
    const big = await exchange(
      fast.url,
      getBook,
      { ...grpc, "grpc-accept-encoding": "gzip" },
      frame(book("big")),
    );
    expect(big.headers["grpc-encoding"]).toBe("gzip");
    expect(Buffer.from(big.body, "hex")[0]).toBe(1);
    const err = await exchange(fast.url, fail, grpc, frame(failing("details")));
    expect(err.trailers["grpc-status"]).toBe(String(Code.FailedPrecondition));
    expect(err.trailers["grpc-message"]).toBe("no: a=b, 100%25 caf%C3%A9");
    expect(err.trailers["grpc-status-details-bin"]).toBeTruthy();
  });
});
