import { gzipSync } from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, type ConnectRouter, type ServiceImplSpec } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BookQuerySchema,
  FailRequestSchema,
  LibraryService,
} from "../../gen/testing/transcode/v1/transcode_pb.js";
import type { Exchange as HttpExchange } from "../../src/edge/index.js";
import type { PrecheckRequest } from "../../src/auth/index.js";
import { AppError, requestTooLarge, toConnectError } from "../../src/errors/index.js";
import { errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { recordServices } from "../../src/services/record-services.js";
import { createWireErrorInterceptor } from "../../src/call/wire-error.js";
import { createConnectDispatch } from "../../src/protocols/fallback/connect-node-lane.js";
import { createCallPipeline } from "../../src/call/pipeline.js";
import { createConnectCodec } from "../../src/protocols/connect/connect-codec.js";
import {
  orBare404,
  send1,
  send2,
  startEdgeServer,
  type Answer,
  type DiffServer,
  type Request,
} from "../support/differential.js";
import { libraryService } from "../support/library-service.js";
import { captureLog } from "../support/log-capture.js";

// The Connect codec (unary) must answer exactly as connect-node's Connect handler would. Every case below
// is sent, over HTTP/1.1 and over h2c, to two one-port servers built from the same service, interceptors,
// precheck and options: the server's Connect path alone (connect-node's handlers behind
// src/protocols/fallback/connect-node-lane.ts; the reference) and the codec in front of it, both serving
// test/support/library-service.ts. Status, headers (all but `date`), trailers and body bytes must be
// identical, and the codec must have taken the call, or left it to connect for what it does not serve. connect-node is deterministic for these answers: no header or body
// byte depends on timing except `date`.

const readMaxBytes = 1024;
const writeMaxBytes = 4096;
const maxTimeoutMs = 5_000;

function routes(router: ConnectRouter): void {
  router.service(LibraryService, libraryService);
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

interface Server extends DiffServer {
  taken: number;
}

/** A one-port server around `dispatch`; what it leaves gets a bare 404. */
async function start(dispatch: (exchange: HttpExchange) => boolean, counter: { taken: number }) {
  const server = await startEdgeServer(orBare404(dispatch));
  return {
    ...server,
    get taken() {
      return counter.taken;
    },
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
  // The server's Connect codec on the call pipeline (src/protocols/dispatch.ts composes them the same way).
  const codec = createConnectCodec({
    services,
    readMaxBytes,
    writeMaxBytes,
    maxTimeoutMs,
    jsonOptions,
    acceptCompression,
  });
  const pipeline = createCallPipeline({ interceptors, precheck, logger: captureLog().logger });
  const counter = { taken: 0 };
  return start((exchange) => {
    const wire = codec(exchange);
    if (wire === undefined) return connect(exchange);
    counter.taken++;
    void pipeline.run(exchange, wire);
    return true;
  }, counter);
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
  /** Whether the codec serves it (false: it must hand the request to connect). */
  fast: boolean;
  /**
   * The server's correction of connect's answer: a body over the limit is 413 `Request too large` (the
   * error table's row), where connect-node alone answers 429 with its own text. Only the status and body
   * differ from connect's answer.
   */
  tooLarge?: true;
}

/** connect's answer to `c`, with the server's correction where the case has one. */
function corrected(c: Case, answer: Answer): Answer {
  if (c.tooLarge !== true) return answer;
  const body = Buffer.from(errorToJsonBytes(toConnectError(requestTooLarge(readMaxBytes)), {}));
  expect(answer.status).toBe(429);
  return {
    ...answer,
    status: 413,
    headers: { ...answer.headers, "content-length": String(body.length) },
    body: body.toString("hex"),
  };
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
    tooLarge: true,
  },
  {
    name: "a body far over readMaxBytes (past the drain limit), length not declared",
    path: getBook,
    headers: json,
    body: bookJson("x".repeat(400_000)),
    declared: false,
    fast: true,
    tooLarge: true,
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
    name: "a deadline over maxTimeoutMs (taken by the codec)",
    path: getBook,
    headers: { ...json, "connect-timeout-ms": "10000" },
    body: bookJson("a"),
    fast: true,
  },
  {
    name: "a malformed connect-timeout-ms (taken by the codec)",
    path: getBook,
    headers: { ...json, "connect-timeout-ms": "soon" },
    body: bookJson("a"),
    fast: true,
  },
  {
    name: "a gzip request body (taken by the codec)",
    path: getBook,
    headers: { ...json, "content-encoding": "gzip" },
    body: gzipSync(bookJson("gz")),
    fast: true,
  },
  {
    name: "an unknown content-encoding (taken by the codec)",
    path: getBook,
    headers: { ...json, "content-encoding": "snappy" },
    body: bookJson("a"),
    fast: true,
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
  { version: "HTTP/1.1", send: (s: Server, r: Request) => send1(s.port, r) },
  { version: "h2c", send: (s: Server, r: Request) => send2(s.url, r) },
];

describe.each(versions)("Connect codec (unary) answers exactly as connect-node, $version", ({ send }) => {
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
    const expected = corrected(c, await send(reference, c));
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
