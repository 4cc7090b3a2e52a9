import * as http from "node:http";
import * as http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type ServiceImplSpec } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import {
  BookQuerySchema,
  FailRequestSchema,
  LibraryService,
} from "../../gen/testing/transcode/v1/transcode_pb.js";
import { composeEdge, type Exchange as HttpExchange } from "../../src/edge/index.js";
import type { PrecheckRequest } from "../../src/auth/index.js";
import { AppError } from "../../src/errors/index.js";
import { recordServices } from "../../src/http/index.js";
import { createWireErrorInterceptor } from "../../src/rpc/wire-error.js";
import { createConnectDispatch } from "../../src/server/connect-dispatch.js";
import { createConnectUnaryHandler } from "../../src/server/connect-unary.js";
import { createOnePortServer } from "../../src/server/one-port.js";
import { captureLog } from "../support/log-capture.js";

// The Connect unary fast path must answer exactly as connect-node's Connect handler would. Every case below
// is sent, over HTTP/1.1 and over h2c, to two one-port servers built from the same service, interceptors,
// precheck and options: the server's Connect path alone (connect-node's handlers behind
// src/server/connect-dispatch.ts; the reference) and the fast path in front of it. Status, headers (all but
// `date`) and body bytes must be identical, and the fast path must have taken the call, or left it to
// connect for what it does not serve. connect-node is deterministic for these answers: no header or body
// byte depends on timing except `date`.

const readMaxBytes = 1024;
const writeMaxBytes = 4096;
const maxTimeoutMs = 5_000;

function routes(router: ConnectRouter): void {
  router.service(LibraryService, {
    getBook(request, ctx) {
      ctx.responseHeader.set("x-seen-name", request.name);
      ctx.responseHeader.set("x-seen-custom", ctx.requestHeader.get("x-custom") ?? "");
      ctx.responseTrailer.set("x-trailer", "t");
      ctx.responseTrailer.append("x-trailer", "u");
      // A header that looks like a muxed trailer: connect appends the real trailer's values to it.
      if (request.name === "mux") ctx.responseHeader.set("trailer-x-trailer", "h");
      if (request.name === "big")
        return { ...request, tags: Array.from({ length: 200 }, (_, i) => `tag ${i}`) };
      if (request.name === "huge") {
        return { ...request, tags: Array.from({ length: 1000 }, (_, i) => `tag ${i}`) };
      }
      return request;
    },
    fail(request) {
      const code = /^code:(\d+)$/.exec(request.kind);
      if (code !== null) throw new ConnectError(`failed with ${code[1]}`, Number(code[1]));
      switch (request.kind) {
        case "details":
          throw new ConnectError("no: a=b, 100% café", Code.FailedPrecondition, { "x-meta": "m" }, [
            { desc: ErrorInfoSchema, value: { reason: "R", domain: "d" } },
          ]);
        case "app":
          throw new AppError("rate_limited", { headers: { "retry-after": "3" }, retryAfterMs: 2500 });
        case "plain":
          throw new Error("not a ConnectError");
        default:
          return request;
      }
    },
    async ping(_request, ctx) {
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

/** Auth's precheck stand-in: refuses a call carrying `x-deny`, and one whose body bytes are not available. */
async function precheck({ headers, body }: PrecheckRequest): Promise<void> {
  if (headers.get("x-deny") !== null) throw new AppError("unauthenticated");
  if ((await body()) === undefined) throw new AppError("internal");
}

const interceptors = [createWireErrorInterceptor()];
const jsonOptions = { ignoreUnknownFields: false, useProtoFieldName: true };
const acceptCompression = [compressionGzip, compressionBrotli];
const adapterOptions = {
  grpc: true,
  grpcWeb: true,
  connect: true,
  readMaxBytes,
  writeMaxBytes,
  maxTimeoutMs,
  jsonOptions,
  requireConnectProtocolHeader: false,
  interceptors,
  acceptCompression,
  precheck,
  logger: captureLog().logger,
};

interface Server {
  url: string;
  port: number;
  taken: number;
  close(): Promise<void>;
}

/** A one-port server (HTTP/1.1 and h2c) running the edge with no entries around `dispatch`. */
async function start(dispatch: (exchange: HttpExchange) => boolean, counter: { taken: number }) {
  const handler = composeEdge({
    entries: [],
    dispatch: (exchange) => {
      if (dispatch(exchange)) return;
      exchange.res.writeHead(404);
      exchange.res.end();
    },
  });
  const server = createOnePortServer({ handler, logger: captureLog().logger });
  const { port } = await server.listen(0, "127.0.0.1");
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get taken() {
      return counter.taken;
    },
    close: () => server.close(0),
  } satisfies Server;
}

function startReference(): Promise<Server> {
  return start(createConnectDispatch({ ...adapterOptions, routes }), { taken: 0 });
}

function startFastPath(): Promise<Server> {
  const services: ServiceImplSpec[] = [];
  const connect = createConnectDispatch({
    ...adapterOptions,
    routes: (router) => routes(recordServices(router, services)),
  });
  const fast = createConnectUnaryHandler({
    services,
    interceptors,
    readMaxBytes,
    writeMaxBytes,
    maxTimeoutMs,
    jsonOptions,
    acceptCompression,
    precheck,
  });
  const counter = { taken: 0 };
  return start((exchange) => {
    if (!fast(exchange)) return connect(exchange);
    counter.taken++;
    return true;
  }, counter);
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

interface Request {
  method?: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  /** Declare the body's length (default) or not (HTTP/1.1: chunked; HTTP/2: no content-length). */
  declared?: boolean;
}

const clean = (h: http.IncomingHttpHeaders) =>
  Object.fromEntries(
    Object.entries(h)
      .filter(([k]) => k !== "date" && k !== ":status")
      .map(([k, v]) => [k, String(v)]),
  );

/**
 * The same request id on every request, so both servers answer with the same `x-request-id` (a generated
 * one would differ), and the comparison still checks that both send it.
 */
const requestId = { "x-request-id": "connect-unary-test" };

/** One request on a fresh HTTP/1.1 connection. */
function exchange1(port: number, r: Request): Promise<Answer> {
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

/** One request on a fresh h2c connection. */
async function exchange2(url: string, r: Request): Promise<Answer> {
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
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (responseHeaders = h));
    stream.on("data", (c: Buffer) => chunks.push(c));
    await new Promise<void>((resolve) => stream.on("close", resolve));
    return {
      status: Number(responseHeaders[":status"]),
      headers: clean(responseHeaders),
      body: Buffer.concat(chunks).toString("hex"),
    };
  } finally {
    session.close();
  }
}

const getBook = "/testing.transcode.v1.LibraryService/GetBook";
const failPath = "/testing.transcode.v1.LibraryService/Fail";
const pingPath = "/testing.transcode.v1.LibraryService/Ping";
const json = { "content-type": "application/json" };
const proto = { "content-type": "application/proto" };
const bookJson = (name: string) => Buffer.from(JSON.stringify({ name, limit: 3 }));
const bookProto = (name: string) =>
  Buffer.from(toBinary(BookQuerySchema, create(BookQuerySchema, { name, limit: 3 })));
const failJson = (kind: string) => Buffer.from(JSON.stringify({ kind }));

interface Case extends Request {
  name: string;
  /** Whether the fast path serves it (false: it must hand the request to connect). */
  fast: boolean;
}

const codes = Array.from({ length: 16 }, (_, i) => i + 1);

const cases: Case[] = [
  { name: "JSON", path: getBook, headers: json, body: bookJson("a"), fast: true },
  {
    name: "JSON with charset, protocol version and metadata",
    path: getBook,
    headers: {
      "content-type": "application/json; charset=utf-8",
      "connect-protocol-version": "1",
      "x-custom": "v",
    },
    body: bookJson("b"),
    fast: true,
  },
  { name: "binary", path: getBook, headers: proto, body: bookProto("c"), fast: true },
  { name: "binary, an empty message", path: getBook, headers: proto, body: Buffer.alloc(0), fast: true },
  { name: "JSON, an empty body", path: getBook, headers: json, body: Buffer.alloc(0), fast: true },
  { name: "JSON, an empty object", path: getBook, headers: json, body: Buffer.from("{}"), fast: true },
  {
    name: "a body sent in chunks",
    path: getBook,
    headers: json,
    body: bookJson("d"),
    declared: false,
    fast: true,
  },
  {
    name: "content-encoding identity",
    path: getBook,
    headers: { ...json, "content-encoding": "identity" },
    body: bookJson("e"),
    fast: true,
  },
  { name: "malformed JSON", path: getBook, headers: json, body: Buffer.from("{nope"), fast: true },
  {
    name: "a JSON field the message does not have",
    path: getBook,
    headers: json,
    body: Buffer.from('{"nope":1}'),
    fast: true,
  },
  {
    name: "a JSON field of the wrong type",
    path: getBook,
    headers: json,
    body: Buffer.from('{"limit":"x"}'),
    fast: true,
  },
  {
    name: "malformed binary",
    path: getBook,
    headers: proto,
    body: Buffer.from([0xff, 0xff, 0xff]),
    fast: true,
  },
  {
    name: "a body over readMaxBytes, length declared (left to the Connect dispatcher)",
    path: getBook,
    headers: json,
    body: bookJson("x".repeat(2000)),
    fast: false,
  },
  {
    name: "a body over readMaxBytes, length not declared",
    path: getBook,
    headers: json,
    body: bookJson("x".repeat(2000)),
    declared: false,
    fast: true,
  },
  {
    name: "a body far over readMaxBytes (past the drain limit), length not declared",
    path: getBook,
    headers: json,
    body: bookJson("x".repeat(400_000)),
    declared: false,
    fast: true,
  },
  {
    name: "refused by the precheck",
    path: getBook,
    headers: { ...json, "x-deny": "1" },
    body: bookJson("a"),
    fast: true,
  },
  {
    name: "a response header named like a trailer",
    path: getBook,
    headers: json,
    body: bookJson("mux"),
    fast: true,
  },
  {
    name: "response headers and trailers",
    path: getBook,
    headers: { ...json, "x-custom": "w" },
    body: bookJson("t"),
    fast: true,
  },
  {
    name: "a large answer, gzip accepted",
    path: getBook,
    headers: { ...json, "accept-encoding": "gzip, br" },
    body: bookJson("big"),
    fast: true,
  },
  {
    name: "a large answer, br accepted first",
    path: getBook,
    headers: { ...proto, "accept-encoding": "br, gzip" },
    body: bookProto("big"),
    fast: true,
  },
  {
    name: "a large answer, no known encoding accepted",
    path: getBook,
    headers: { ...json, "accept-encoding": "zstd" },
    body: bookJson("big"),
    fast: true,
  },
  {
    name: "a small answer, gzip accepted",
    path: getBook,
    headers: { ...json, "accept-encoding": "gzip" },
    body: bookJson("small"),
    fast: true,
  },
  { name: "an answer over writeMaxBytes", path: getBook, headers: json, body: bookJson("huge"), fast: true },
  {
    name: "an error with details and metadata",
    path: failPath,
    headers: json,
    body: failJson("details"),
    fast: true,
  },
  {
    name: "an error with details and metadata, binary",
    path: failPath,
    headers: proto,
    body: Buffer.from(toBinary(FailRequestSchema, create(FailRequestSchema, { kind: "details" }))),
    fast: true,
  },
  {
    name: "an AppError with headers and retry info",
    path: failPath,
    headers: json,
    body: failJson("app"),
    fast: true,
  },
  { name: "a thrown non-Connect error", path: failPath, headers: json, body: failJson("plain"), fast: true },
  ...codes.map((code) => ({
    name: `error code ${code} (${Code[code]})`,
    path: failPath,
    headers: json,
    body: failJson(`code:${code}`),
    fast: true,
  })),
  {
    name: "a deadline that passes",
    path: pingPath,
    headers: { ...json, "connect-timeout-ms": "50" },
    body: failJson(""),
    fast: true,
  },
  {
    name: "a deadline within the maximum",
    path: getBook,
    headers: { ...json, "connect-timeout-ms": "4000" },
    body: bookJson("a"),
    fast: true,
  },
  {
    name: "a deadline over maxTimeoutMs (left to connect)",
    path: getBook,
    headers: { ...json, "connect-timeout-ms": "10000" },
    body: bookJson("a"),
    fast: false,
  },
  {
    name: "a malformed connect-timeout-ms (left to connect)",
    path: getBook,
    headers: { ...json, "connect-timeout-ms": "soon" },
    body: bookJson("a"),
    fast: false,
  },
  {
    name: "a gzip request body (left to connect)",
    path: getBook,
    headers: { ...json, "content-encoding": "gzip" },
    body: gzipSync(bookJson("gz")),
    fast: false,
  },
  {
    name: "an unknown content-encoding (left to connect)",
    path: getBook,
    headers: { ...json, "content-encoding": "snappy" },
    body: bookJson("a"),
    fast: false,
  },
  {
    name: "a bad content type (left to connect: 415)",
    path: getBook,
    headers: { "content-type": "text/plain" },
    body: bookJson("a"),
    fast: false,
  },
  {
    name: "a streaming content type on a unary method (left to connect)",
    path: getBook,
    headers: { "content-type": "application/connect+json" },
    body: bookJson("a"),
    fast: false,
  },
  {
    name: "GET (left to connect)",
    method: "GET",
    path: `${getBook}?encoding=json&message=${encodeURIComponent('{"name":"g"}')}`,
    headers: {},
    body: Buffer.alloc(0),
    fast: false,
  },
  {
    name: "a server-streaming method (left to connect)",
    path: "/testing.transcode.v1.LibraryService/WatchShelf",
    headers: json,
    body: Buffer.from(JSON.stringify({ shelf: "s", count: 2 })),
    fast: false,
  },
  {
    name: "an unknown method (left to connect)",
    path: "/testing.transcode.v1.LibraryService/Nope",
    headers: json,
    body: bookJson("a"),
    fast: false,
  },
];

const versions = [
  { version: "HTTP/1.1", send: (s: Server, r: Request) => exchange1(s.port, r) },
  { version: "h2c", send: (s: Server, r: Request) => exchange2(s.url, r) },
];

describe.each(versions)("Connect unary fast path answers exactly as connect-node, $version", ({ send }) => {
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

  it.each(cases)("$name", async (c) => {
    const before = fast.taken;
    const expected = await send(reference, c);
    const actual = await send(fast, c);
    expect(actual).toEqual(expected);
    expect(fast.taken - before).toBe(c.fast ? 1 : 0);
  });

  it("the cases include real answers, errors and the server's corrections", async () => {
    // A guard against a reference that fails everything: the comparisons above must include real answers.
    const ok = await send(fast, {
      path: getBook,
      headers: { ...json, "x-custom": "v" },
      body: bookJson("a"),
    });
    expect(ok.status).toBe(200);
    expect(JSON.parse(Buffer.from(ok.body, "hex").toString())).toEqual({ name: "a", limit: 3 });
    expect(ok.headers["content-type"]).toBe("application/json");
    expect(ok.headers["x-seen-custom"]).toBe("v");
    expect(ok.headers["trailer-x-trailer"]).toBe("t, u");
    const bin = await send(fast, { path: getBook, headers: proto, body: bookProto("p") });
    expect(fromBinary(BookQuerySchema, Buffer.from(bin.body, "hex"))).toMatchObject({ name: "p", limit: 3 });
    const big = await send(fast, {
      path: getBook,
      headers: { ...json, "accept-encoding": "gzip" },
      body: bookJson("big"),
    });
    expect(big.headers["content-encoding"]).toBe("gzip");
    const err = await send(fast, { path: failPath, headers: json, body: failJson("details") });
    expect(err.status).toBe(400);
    expect(err.headers["x-meta"]).toBe("m");
    expect(JSON.parse(Buffer.from(err.body, "hex").toString())).toMatchObject({
      code: "failed_precondition",
      message: "no: a=b, 100% café",
    });
    const tooLarge = await send(fast, {
      path: getBook,
      headers: json,
      body: bookJson("x".repeat(2000)),
      declared: false,
    });
    expect(tooLarge.status).toBe(413);
    expect(JSON.parse(Buffer.from(tooLarge.body, "hex").toString())).toMatchObject({
      code: "resource_exhausted",
      message: "Request too large",
    });
    const malformed = await send(fast, { path: getBook, headers: proto, body: Buffer.from([0xff, 0xff]) });
    expect(malformed.status).toBe(400);
    const denied = await send(fast, {
      path: getBook,
      headers: { ...json, "x-deny": "1" },
      body: bookJson("a"),
    });
    expect(denied.status).toBe(401);
  });
});
