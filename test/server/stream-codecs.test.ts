import { gunzipSync, gzipSync } from "node:zlib";
import {
  create,
  fromBinary,
  toBinary,
  toJson,
  type DescMessage,
  type MessageInitShape,
} from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { AnySchema, type Any } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter, type ServiceImplSpec } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import {
  BookQuerySchema,
  BookSchema,
  FailRequestSchema,
  LibraryService,
  WatchShelfRequestSchema,
} from "../../gen/testing/transcode/v1/transcode_pb.js";
import type { PrecheckRequest } from "../../src/auth/index.js";
import type { Exchange } from "../../src/edge/index.js";
import { AppError } from "../../src/errors/index.js";
import { createRestHandler } from "../../src/protocols/rest/rest-handler.js";
import { recordServices } from "../../src/services/record-services.js";
import { createWireErrorInterceptor } from "../../src/call/wire-error.js";
import { createConnectDispatch } from "../../src/protocols/fallback/connect-node-lane.js";
import { createConnectOptions } from "../../src/protocols/connect-options.js";
import { createDispatch } from "../../src/protocols/dispatch.js";
import { createCallPipeline } from "../../src/call/pipeline.js";
import {
  envelope,
  envelopes,
  send1,
  send2,
  startEdgeServer,
  type Answer,
  type DiffServer,
  type Request,
} from "../support/differential.js";
import { libraryService } from "../support/library-service.js";
import { captureLog } from "../support/log-capture.js";

// The protocol codecs (gRPC server-streaming over h2c; gRPC-Web unary and server-streaming, Connect
// server-streaming, binary and JSON, over HTTP/1.1 and h2c) must answer exactly as connect-node does.
// Every case below is sent to two one-port servers built from the same service, interceptors, precheck,
// limits and shutdown signal: the REFERENCE, connect-node's handlers behind src/protocols/fallback/connect-node-lane.ts
// (the fallback lane) with the REST handler for what is no RPC, as src/protocols/dispatch.ts composes them;
// and the SUBJECT. Status, every header but `date`, every body byte (all frames), the HTTP/2 trailers
// and how the HTTP/2 stream ended (its RST_STREAM code) must be identical, and the subject's codec lane
// must have taken the call (`codec: true`) or left it to connect-node (`codec: false`).
//
// HOW TO PLUG IN THE CODECS. Only `startSubject` (below) changes:
//   1. Build the production dispatcher from the very inputs the reference is built from: `routes` (or,
//      for a dispatcher that takes a list, `[createServiceImplSpec(LibraryService, libraryService)]`),
//      `interceptors`, `precheck`, `connectOptions` (readMaxBytes 1 KiB, writeMaxBytes 4 KiB,
//      maxTimeoutMs 5 s, `shutdown.signal`), `acceptCompression`, `logger`. For example
//        createDispatch({ connectOptions, services, precheck, logger, onCodec: () => taken++ })
//      (today's `createDispatch({ connectOptions, routes, precheck, logger })` already passes every case:
//      for these protocols it hands everything to connect-node.)
//   2. Count the calls the codec lane takes, at the moment it takes them (before its answer is written):
//      a hook option as above, or a mark the codec sets on the exchange read right after `dispatch`
//      returns. Not from the access line or `onEnd`: those may run after the client has its answer.
//   3. Return `{ ...(await startEdgeServer(dispatch)), taken: () => taken }`.
// While `taken` is undefined (today: no codec lane, the subject is the reference's own composition, so
// every comparison passes and proves the cases deterministic) only the comparison runs; once it is a
// function each case also checks its `codec` column. If the codecs leave a case to connect-node on
// purpose (say, compressed request bodies), flip its `codec` to false and keep the comparison.
//
// Determinism: no byte of these answers depends on timing except the `date` header, which is left out of
// every comparison; nothing else is normalised. The deadline cases are deterministic by construction: the
// service yields its messages at once and only then waits on the deadline, and connect's text for it is a
// constant ("the operation timed out"). A case whose reference answer ever differs between two runs is a
// harness defect to fix, not to mask.

const readMaxBytes = 1024;
const writeMaxBytes = 4096;
const maxTimeoutMs = 5_000;

/** Auth's precheck stand-in: `x-deny` refuses; `x-sign: <hex>` must be the message bytes as sent. */
async function precheck({ headers, body }: PrecheckRequest): Promise<void> {
  if (headers.get("x-deny") !== null) throw new AppError("unauthenticated");
  const signature = headers.get("x-sign");
  if (signature === null) return;
  const bytes = await body();
  // As Auth.precheck: a body that is not one message is the protocol's error, not auth's.
  if (bytes === undefined) return;
  if (Buffer.from(bytes).toString("hex") !== signature) throw new AppError("unauthenticated");
}

const shutdown = new AbortController();
const interceptors = [createWireErrorInterceptor()];
const connectOptions = createConnectOptions({
  bodyLimitBytes: readMaxBytes,
  writeMaxBytes,
  maxTimeoutMs,
  interceptors,
  shutdownSignal: shutdown.signal,
});
/** connect-node's own default list, named as src/protocols/dispatch.ts names it. */
const acceptCompression = [compressionGzip, compressionBrotli];
const logger = captureLog().logger;
const routes = (router: ConnectRouter): void => {
  router.service(LibraryService, libraryService);
};

interface Subject extends DiffServer {
  /** How many calls the codec lane has taken so far; undefined while there is no codec lane. */
  readonly taken: (() => number) | undefined;
}

/** The reference: connect-node's lane (src/protocols/fallback/connect-node-lane.ts), then REST for what is no RPC. */
function referenceDispatch(): (exchange: Exchange) => void {
  const services: ServiceImplSpec[] = [];
  const connect = createConnectDispatch({
    ...connectOptions,
    acceptCompression,
    logger,
    precheck,
    routes: (router) => routes(recordServices(router, services)),
  });
  const rest = createRestHandler({
    services,
    pipeline: createCallPipeline({ interceptors, shutdownSignal: shutdown.signal, logger, precheck }),
    maxBodyBytes: readMaxBytes,
    maxTimeoutMs,
  });
  return (exchange) => {
    if (!connect(exchange)) rest(exchange);
  };
}

function startReference(): Promise<DiffServer> {
  return startEdgeServer(referenceDispatch());
}

/** The subject: see "HOW TO PLUG IN THE CODECS" at the top. */
async function startSubject(): Promise<Subject> {
  let taken = 0;
  const dispatch = createDispatch({ connectOptions, routes, precheck, logger, onCodecCall: () => taken++ });
  return { ...(await startEdgeServer(dispatch)), taken: () => taken };
}

// ---------------------------------------------------------------------------------------------------------
// The protocols and their cases.

type Version = "HTTP/1.1" | "h2c";

interface Protocol {
  readonly name: string;
  readonly kind: "grpc" | "grpc-web" | "connect";
  /** The request headers every call of the protocol sends. */
  readonly headers: Record<string, string>;
  readonly versions: readonly Version[];
  /** JSON messages (Connect JSON) rather than protobuf binary. */
  readonly json: boolean;
  /** The header naming the request messages' compression, and the one listing what the caller accepts. */
  readonly encoding: string;
  readonly acceptEncoding: string;
  /** The deadline header and its value for `ms` milliseconds. */
  readonly timeout: string;
  readonly ms: (ms: number) => string;
}

const grpcHeaders = {
  encoding: "grpc-encoding",
  acceptEncoding: "grpc-accept-encoding",
  timeout: "grpc-timeout",
};
const grpcMs = (ms: number) => `${ms}m`;
const connectHeaders = {
  encoding: "connect-content-encoding",
  acceptEncoding: "connect-accept-encoding",
  timeout: "connect-timeout-ms",
};
const connectMs = (ms: number) => String(ms);

const protocols: readonly Protocol[] = [
  {
    name: "gRPC",
    kind: "grpc",
    headers: { "content-type": "application/grpc", te: "trailers" },
    versions: ["h2c"],
    json: false,
    ...grpcHeaders,
    ms: grpcMs,
  },
  {
    name: "gRPC-Web",
    kind: "grpc-web",
    headers: { "content-type": "application/grpc-web", "x-grpc-web": "1" },
    versions: ["HTTP/1.1", "h2c"],
    json: false,
    ...grpcHeaders,
    ms: grpcMs,
  },
  {
    name: "gRPC-Web+proto",
    kind: "grpc-web",
    headers: { "content-type": "application/grpc-web+proto" },
    versions: ["HTTP/1.1", "h2c"],
    json: false,
    ...grpcHeaders,
    ms: grpcMs,
  },
  {
    name: "Connect+proto",
    kind: "connect",
    headers: { "content-type": "application/connect+proto" },
    versions: ["HTTP/1.1", "h2c"],
    json: false,
    ...connectHeaders,
    ms: connectMs,
  },
  {
    name: "Connect+json",
    kind: "connect",
    headers: { "content-type": "application/connect+json" },
    versions: ["HTTP/1.1", "h2c"],
    json: true,
    ...connectHeaders,
    ms: connectMs,
  },
];

const service = "/testing.transcode.v1.LibraryService";
const watchPath = `${service}/WatchShelf`;
const getBookPath = `${service}/GetBook`;
const failPath = `${service}/Fail`;
const pingPath = `${service}/Ping`;

interface Case extends Request {
  name: string;
  /** Whether the codec lane serves it (false: it must leave the call to connect-node). */
  codec: boolean;
}

/** A message as the protocol encodes it: protobuf binary, or JSON (Connect JSON). */
function encode<Desc extends DescMessage>(p: Protocol, schema: Desc, init: MessageInitShape<Desc>): Buffer {
  const message = create(schema, init);
  return p.json
    ? Buffer.from(JSON.stringify(toJson(schema, message)))
    : Buffer.from(toBinary(schema, message));
}

function casesOf(p: Protocol): Case[] {
  const watch = (init: MessageInitShape<typeof WatchShelfRequestSchema>) =>
    encode(p, WatchShelfRequestSchema, init);
  const plain = watch({ shelf: "s", count: 3 });
  const at = (extra: Record<string, string>) => ({ ...p.headers, ...extra });
  const stream = (name: string, body: Buffer, extra: Record<string, string> = {}): Case => ({
    name,
    path: watchPath,
    headers: at(extra),
    body,
    codec: true,
  });
  /** An envelope declaring 2,000 bytes (over readMaxBytes), followed by `sent` bytes. */
  const overLimit = (sent: number) => {
    const head = Buffer.from([0, 0, 0, 0x07, 0xd0]);
    return Buffer.concat([head, Buffer.alloc(sent, 0x61)]);
  };

  const cases: Case[] = [
    // Success.
    stream("no message", envelope(watch({ shelf: "s", count: 0 }))),
    stream("one message", envelope(watch({ shelf: "s", count: 1 }))),
    stream("several messages", envelope(watch({ shelf: "s", count: 5 }))),
    stream("request metadata echoed in response headers", envelope(plain), { "x-custom": "v" }),
    stream("a response header set after the first message", envelope(watch({ shelf: "late", count: 2 }))),
    { ...stream("a body without a declared length", envelope(plain)), declared: false },
    stream("an empty request message", envelope(Buffer.alloc(0))),
    // The precheck: before the first message, over the message bytes as sent.
    stream("refused by the precheck", envelope(plain), { "x-deny": "1" }),
    stream("signed: the precheck sees the message bytes", envelope(plain), {
      "x-sign": plain.toString("hex"),
    }),
    stream("signed over other bytes", envelope(plain), { "x-sign": "00" }),
    // Deadlines.
    stream("a deadline within the maximum", envelope(plain), { [p.timeout]: p.ms(4_000) }),
    stream("a deadline over maxTimeoutMs", envelope(plain), { [p.timeout]: p.ms(10_000) }),
    stream("a malformed deadline", envelope(plain), { [p.timeout]: "soon" }),
    stream("a deadline that expires mid-stream", envelope(watch({ shelf: "s", count: 2, hang: true })), {
      [p.timeout]: p.ms(200),
    }),
    stream("a deadline that expires before the first message", envelope(watch({ shelf: "s", hang: true })), {
      [p.timeout]: p.ms(100),
    }),
    // Errors from the implementation.
    stream(
      "an error before the first message",
      envelope(watch({ shelf: "details", count: 0, failAfter: true })),
    ),
    stream(
      "a ConnectError with details and metadata after two messages",
      envelope(watch({ shelf: "details", count: 2, failAfter: true })),
    ),
    stream(
      "a plain Error after two messages",
      envelope(watch({ shelf: "plain", count: 2, failAfter: true })),
    ),
    stream(
      "an AppError with headers after a message",
      envelope(watch({ shelf: "app", count: 1, failAfter: true })),
    ),
    stream(
      "a ConnectError of another code after a message",
      envelope(watch({ shelf: `code:${Code.Unavailable}`, count: 1, failAfter: true })),
    ),
    stream("a message over writeMaxBytes mid-stream", envelope(watch({ shelf: "huge", count: 3 }))),
    // Request compression.
    stream("a gzip request message", envelope(gzipSync(plain), 1), {
      [p.encoding]: "gzip",
      "x-sign": plain.toString("hex"),
    }),
    stream("gzip declared, the message sent uncompressed", envelope(plain), { [p.encoding]: "gzip" }),
    stream("identity declared", envelope(plain), { [p.encoding]: "identity" }),
    stream("an unknown request compression", envelope(plain), { [p.encoding]: "snappy" }),
    stream("an unknown compression, the message flagged compressed", envelope(plain, 1), {
      [p.encoding]: "snappy",
    }),
    stream("a gzip message that does not inflate", envelope(Buffer.from("not gzip"), 1), {
      [p.encoding]: "gzip",
    }),
    stream(
      "a gzip message over readMaxBytes once inflated",
      envelope(gzipSync(watch({ shelf: "x".repeat(4000), count: 1 })), 1),
      { [p.encoding]: "gzip" },
    ),
    // Response compression: connect compresses messages of 1 KiB and more.
    stream("messages over 1 KiB, gzip accepted", envelope(watch({ shelf: "big", count: 2 })), {
      [p.acceptEncoding]: "gzip",
    }),
    stream("messages over 1 KiB, br accepted first", envelope(watch({ shelf: "big", count: 2 })), {
      [p.acceptEncoding]: "br, gzip",
    }),
    stream(
      "messages over 1 KiB, no known compression accepted",
      envelope(watch({ shelf: "big", count: 2 })),
      {
        [p.acceptEncoding]: "zstd",
      },
    ),
    stream("messages under 1 KiB, gzip accepted", envelope(plain), { [p.acceptEncoding]: "gzip" }),
    stream("messages over 1 KiB, gzip both ways", envelope(gzipSync(watch({ shelf: "big", count: 2 })), 1), {
      [p.encoding]: "gzip",
      [p.acceptEncoding]: "gzip",
    }),
    // Framing faults.
    stream("an empty body", Buffer.alloc(0)),
    stream("half an envelope header", Buffer.from([0, 0, 0])),
    stream("an incomplete envelope", envelope(plain).subarray(0, 7)),
    stream("two request messages", Buffer.concat([envelope(plain), envelope(plain)])),
    stream("a message and half of another", Buffer.concat([envelope(plain), envelope(plain).subarray(0, 6)])),
    stream("an envelope declaring more than readMaxBytes", overLimit(2_000)),
    stream("an envelope declaring more than readMaxBytes, body cut short", overLimit(10)),
    {
      ...stream("an envelope declaring more than readMaxBytes, length not declared", overLimit(2_000)),
      declared: false,
    },
    stream("a compressed flag without an encoding", envelope(plain, 1)),
    stream("an unknown envelope flag", envelope(plain, 0x04)),
    stream("a request frame flagged end-stream (0x02)", envelope(plain, 0x02)),
    stream("a request frame flagged trailers (0x80)", envelope(plain, 0x80)),
    // Undecodable messages.
    ...(p.json
      ? [
          stream("malformed JSON", envelope(Buffer.from("{nope"))),
          stream("an unknown JSON field", envelope(Buffer.from('{"shelf":"s","nope":1}'))),
          stream("a JSON field of the wrong type", envelope(Buffer.from('{"count":"x"}'))),
          stream(
            "binary where JSON is expected",
            envelope(
              toBinary(WatchShelfRequestSchema, create(WatchShelfRequestSchema, { shelf: "s", count: 1 })),
            ),
          ),
        ]
      : [
          stream("bytes that are not the message", envelope(Buffer.from([0xff, 0xff, 0xff]))),
          stream("a field of the wrong wire type", envelope(Buffer.from([0x10, 0x0a, 0x01, 0x61]))),
        ]),
    // What the codecs do not serve.
    { ...stream("a method that does not exist", envelope(plain)), path: `${service}/Nope`, codec: false },
    {
      ...stream("a service that does not exist", envelope(plain)),
      path: "/testing.transcode.v1.Nope/WatchShelf",
      codec: false,
    },
    { ...stream("GET (left to connect-node)", Buffer.alloc(0)), method: "GET", codec: false },
  ];

  if (p.kind === "grpc") {
    cases.push(
      stream("application/grpc+proto", envelope(plain), { "content-type": "application/grpc+proto" }),
      { ...stream("without te: trailers", envelope(plain)), headers: { "content-type": "application/grpc" } },
      {
        ...stream("application/grpc+json (taken by the codec)", envelope(Buffer.from('{"shelf":"s"}')), {
          "content-type": "application/grpc+json",
        }),
        codec: true,
      },
    );
  }
  if (p.kind === "grpc-web") {
    const book = (name: string) => encode(p, BookQuerySchema, { name, limit: 3 });
    const failing = (kind: string) => encode(p, FailRequestSchema, { kind });
    const unary = (name: string, path: string, body: Buffer, extra: Record<string, string> = {}): Case => ({
      name: `unary: ${name}`,
      path,
      headers: at(extra),
      body,
      codec: true,
    });
    cases.push(
      unary("an answer", getBookPath, envelope(book("a"))),
      unary("response headers and trailers", getBookPath, envelope(book("t")), { "x-custom": "w" }),
      unary("a response header named like a trailer", getBookPath, envelope(book("mux"))),
      unary("an empty request message", getBookPath, envelope(Buffer.alloc(0))),
      unary("an answer over 1 KiB, gzip accepted", getBookPath, envelope(book("big")), {
        "grpc-accept-encoding": "gzip",
      }),
      unary("an answer under 1 KiB, gzip accepted", getBookPath, envelope(book("small")), {
        "grpc-accept-encoding": "gzip",
      }),
      unary("an answer over writeMaxBytes", getBookPath, envelope(book("huge"))),
      unary("a gzip request message", getBookPath, envelope(gzipSync(book("gz")), 1), {
        "grpc-encoding": "gzip",
      }),
      unary("an unknown request compression", getBookPath, envelope(book("a")), {
        "grpc-encoding": "snappy",
      }),
      unary("refused by the precheck", getBookPath, envelope(book("a")), { "x-deny": "1" }),
      unary("an error with details and metadata", failPath, envelope(failing("details"))),
      unary("a plain Error", failPath, envelope(failing("plain"))),
      unary("an AppError with headers and retry info", failPath, envelope(failing("app"))),
      ...[Code.Canceled, Code.InvalidArgument, Code.NotFound, Code.Unavailable, Code.Unauthenticated].map(
        (code) => unary(`error code ${code} (${Code[code]})`, failPath, envelope(failing(`code:${code}`))),
      ),
      unary("a deadline that passes", pingPath, envelope(failing("")), { "grpc-timeout": "50m" }),
      unary("a deadline over maxTimeoutMs", getBookPath, envelope(book("a")), { "grpc-timeout": "10S" }),
      unary("a malformed deadline", getBookPath, envelope(book("a")), { "grpc-timeout": "soon" }),
      unary("an empty body", getBookPath, Buffer.alloc(0)),
      unary("an incomplete envelope", getBookPath, envelope(book("a")).subarray(0, 7)),
      unary("two request messages", getBookPath, Buffer.concat([envelope(book("a")), envelope(book("b"))])),
      unary("an envelope declaring more than readMaxBytes", getBookPath, overLimit(2_000)),
      unary("a compressed flag without an encoding", getBookPath, envelope(book("a"), 1)),
      unary("bytes that are not the message", getBookPath, envelope(Buffer.from([0xff, 0xff, 0xff]))),
      {
        ...unary(
          "application/grpc-web-text (left to connect-node)",
          getBookPath,
          Buffer.from(envelope(book("a")).toString("base64")),
          {
            "content-type": "application/grpc-web-text",
          },
        ),
        codec: false,
      },
    );
  }
  if (p.kind === "connect") {
    cases.push(
      stream("with connect-protocol-version", envelope(plain), { "connect-protocol-version": "1" }),
      {
        ...stream(
          "a unary method with a streaming content type (left to connect-node)",
          envelope(encode(p, BookQuerySchema, { name: "a" })),
        ),
        path: getBookPath,
        codec: false,
      },
    );
  }
  return cases;
}

const send = (version: Version) => (server: DiffServer, r: Request) =>
  version === "h2c" ? send2(server.url, r, { reset: true }) : send1(server.port, r);

const lanes = protocols.flatMap((protocol) =>
  protocol.versions.map((version) => ({ protocol, version, cases: casesOf(protocol) })),
);

let reference: DiffServer;
let subject: Subject;
beforeAll(async () => {
  reference = await startReference();
  subject = await startSubject();
});
afterAll(async () => {
  await reference.close();
  await subject.close();
});

describe.each(lanes)("$protocol.name over $version answers exactly as connect-node", ({ version, cases }) => {
  it.each(cases)("$name", async (c) => {
    const before = subject.taken?.();
    const expected = await send(version)(reference, c);
    const actual = await send(version)(subject, c);
    expect(actual).toEqual(expected);
    if (subject.taken !== undefined) expect(subject.taken() - (before ?? 0)).toBe(c.codec ? 1 : 0);
  });
});

// ---------------------------------------------------------------------------------------------------------
// The reference is right: its answers are what the gRPC, gRPC-Web and Connect specifications say, read
// here with nothing from connect, so the comparisons above cannot pass on two equally broken servers.

/** google.rpc.Status from protobuf binary, field by field (gen/ has no google/rpc/status_pb). */
function readStatus(bytes: Uint8Array): { code: number; message: string; details: Any[] } {
  const reader = new BinaryReader(bytes);
  const status = { code: 0, message: "", details: [] as Any[] };
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1) status.code = reader.int32();
    else if (field === 2) status.message = reader.string();
    else if (field === 3) status.details.push(fromBinary(AnySchema, reader.bytes()));
    else reader.skip(wireType);
  }
  return status;
}

/** A gRPC-Web trailer block: HTTP/1-style `name: value` lines, each ended by CRLF (the gRPC-Web protocol). */
function readWebTrailers(block: Buffer): Record<string, string> {
  const text = block.toString("latin1");
  expect(text.endsWith("\r\n")).toBe(true);
  return Object.fromEntries(
    text
      .slice(0, -2)
      .split("\r\n")
      .map((line) => {
        const colon = line.indexOf(":");
        return [line.slice(0, colon).trim(), line.slice(colon + 1).trim()];
      }),
  );
}

const bookNames = (frames: { data: Buffer }[]) => frames.map((f) => fromBinary(BookSchema, f.data).name);
const protocolNamed = (name: string): Protocol => {
  const p = protocols.find((x) => x.name === name);
  if (p === undefined) throw new Error(name);
  return p;
};

describe("the reference answers as the specifications say", () => {
  const grpc = protocolNamed("gRPC");
  const web = protocolNamed("gRPC-Web+proto");
  const connectProto = protocolNamed("Connect+proto");
  const connectJson = protocolNamed("Connect+json");
  const watch = (p: Protocol, init: MessageInitShape<typeof WatchShelfRequestSchema>) =>
    envelope(encode(p, WatchShelfRequestSchema, init));
  const call = (p: Protocol, version: Version, body: Buffer, extra: Record<string, string> = {}) =>
    send(version)(reference, { path: watchPath, headers: { ...p.headers, ...extra }, body });
  const bodyOf = (a: Answer) => {
    const { frames, rest } = envelopes(Buffer.from(a.body, "hex"));
    expect(rest.length).toBe(0);
    return frames;
  };

  it("gRPC: messages in frames flagged 0, status and the service's trailers in HTTP/2 trailers", async () => {
    const a = await call(grpc, "h2c", watch(grpc, { shelf: "s", count: 3 }));
    expect(a.status).toBe(200);
    expect(a.headers["content-type"]).toMatch(/^application\/grpc(\+proto)?$/);
    expect(a.headers["grpc-status"]).toBeUndefined();
    expect(a.headers["x-seen-name"]).toBe("s");
    const frames = bodyOf(a);
    expect(frames.map((f) => f.flags)).toEqual([0, 0, 0]);
    expect(bookNames(frames)).toEqual(["s/0", "s/1", "s/2"]);
    expect(a.trailers["grpc-status"]).toBe("0");
    expect(a.trailers["x-trailer"]).toBe("t, u");
    expect(a.reset).toBe(0);
  });

  it("gRPC: an error after messages: status, percent-encoded message, Status details", async () => {
    const a = await call(grpc, "h2c", watch(grpc, { shelf: "details", count: 2, failAfter: true }));
    expect(a.status).toBe(200);
    expect(bookNames(bodyOf(a))).toEqual(["details/0", "details/1"]);
    expect(a.trailers["grpc-status"]).toBe(String(Code.FailedPrecondition));
    expect(decodeURIComponent(a.trailers["grpc-message"] ?? "")).toBe("no: a=b, 100% café");
    // The spec's percent-encoding: what is not printable ASCII, and "%" itself.
    expect(a.trailers["grpc-message"]).toBe("no: a=b, 100%25 caf%C3%A9");
    expect(a.trailers["x-meta"]).toBe("m");
    const status = readStatus(Buffer.from(a.trailers["grpc-status-details-bin"] ?? "", "base64"));
    expect(status.code).toBe(Code.FailedPrecondition);
    expect(status.message).toBe("no: a=b, 100% café");
    expect(status.details.map((d) => d.typeUrl)).toEqual(["type.googleapis.com/google.rpc.ErrorInfo"]);
    expect(fromBinary(ErrorInfoSchema, status.details[0]?.value ?? new Uint8Array())).toMatchObject({
      reason: "R",
      domain: "d",
    });
  });

  it("gRPC: refusals before any message carry their own codes", async () => {
    const plain = watch(grpc, { shelf: "s", count: 3 });
    const statusOf = async (body: Buffer, extra: Record<string, string> = {}) => {
      const a = await call(grpc, "h2c", body, extra);
      expect(a.status).toBe(200);
      expect(a.body).toBe("");
      return [Number(a.trailers["grpc-status"]), decodeURIComponent(a.trailers["grpc-message"] ?? "")];
    };
    expect(await statusOf(plain, { "x-deny": "1" })).toEqual([Code.Unauthenticated, "Unauthorized"]);
    expect((await statusOf(plain, { "grpc-timeout": "10S" }))[0]).toBe(Code.InvalidArgument);
    expect((await statusOf(plain, { "grpc-timeout": "soon" }))[0]).toBe(Code.InvalidArgument);
    expect((await statusOf(plain, { "grpc-encoding": "snappy" }))[0]).toBe(Code.Unimplemented);
    expect((await statusOf(Buffer.concat([plain, plain])))[0]).toBe(Code.Unimplemented);
    expect(await statusOf(Buffer.from([0, 0, 0, 0x07, 0xd0]))).toEqual([
      Code.ResourceExhausted,
      "Request too large",
    ]);
    expect(await statusOf(envelope(Buffer.from([0xff, 0xff, 0xff])))).toEqual([
      Code.InvalidArgument,
      "Malformed request message",
    ]);
  });

  it("gRPC: negotiated gzip compresses frames of 1 KiB and more (flag 1), not smaller ones", async () => {
    const big = await call(grpc, "h2c", watch(grpc, { shelf: "big", count: 2 }), {
      "grpc-accept-encoding": "gzip",
    });
    expect(big.headers["grpc-encoding"]).toBe("gzip");
    const frames = bodyOf(big);
    expect(frames.map((f) => f.flags)).toEqual([1, 1]);
    expect(frames.map((f) => fromBinary(BookSchema, gunzipSync(f.data)).tags.length)).toEqual([200, 200]);
    const small = await call(grpc, "h2c", watch(grpc, { shelf: "s", count: 2 }), {
      "grpc-accept-encoding": "gzip",
    });
    expect(bodyOf(small).map((f) => f.flags)).toEqual([0, 0]);
    expect(bookNames(bodyOf(small))).toEqual(["s/0", "s/1"]);
  });

  it("gRPC: a deadline passing mid-stream ends it DEADLINE_EXCEEDED", async () => {
    const a = await call(grpc, "h2c", watch(grpc, { shelf: "s", count: 2, hang: true }), {
      "grpc-timeout": "200m",
    });
    expect(bookNames(bodyOf(a))).toEqual(["s/0", "s/1"]);
    expect(a.trailers["grpc-status"]).toBe(String(Code.DeadlineExceeded));
  });

  it.each(["HTTP/1.1", "h2c"] as const)(
    "gRPC-Web over %s: messages, then one last frame flagged 0x80 holding the status and trailers",
    async (version) => {
      const a = await call(web, version, watch(web, { shelf: "s", count: 2 }));
      expect(a.status).toBe(200);
      expect(a.headers["content-type"]).toBe("application/grpc-web+proto");
      expect(a.trailers).toEqual({});
      const frames = bodyOf(a);
      expect(frames.map((f) => f.flags)).toEqual([0, 0, 0x80]);
      expect(bookNames(frames.slice(0, 2))).toEqual(["s/0", "s/1"]);
      expect(readWebTrailers(frames[2]?.data ?? Buffer.alloc(0))).toEqual({
        "grpc-status": "0",
        "x-trailer": "t, u",
      });
      const err = await call(web, version, watch(web, { shelf: "details", count: 1, failAfter: true }));
      const errFrames = bodyOf(err);
      expect(errFrames.map((f) => f.flags)).toEqual([0, 0x80]);
      const trailers = readWebTrailers(errFrames[1]?.data ?? Buffer.alloc(0));
      expect(trailers["grpc-status"]).toBe(String(Code.FailedPrecondition));
      expect(decodeURIComponent(trailers["grpc-message"] ?? "")).toBe("no: a=b, 100% café");
      expect(trailers["x-meta"]).toBe("m");
      const unary = await send(version)(reference, {
        path: getBookPath,
        headers: web.headers,
        body: envelope(encode(web, BookQuerySchema, { name: "a", limit: 3 })),
      });
      const unaryFrames = bodyOf(unary);
      expect(unaryFrames.map((f) => f.flags)).toEqual([0, 0x80]);
      expect(fromBinary(BookQuerySchema, unaryFrames[0]?.data ?? Buffer.alloc(0))).toMatchObject({
        name: "a",
        limit: 3,
      });
      expect(readWebTrailers(unaryFrames[1]?.data ?? Buffer.alloc(0))["grpc-status"]).toBe("0");
    },
  );

  it.each(["HTTP/1.1", "h2c"] as const)(
    "Connect over %s: HTTP 200, messages, then one end-stream frame flagged 0x02 holding JSON",
    async (version) => {
      const a = await call(connectProto, version, watch(connectProto, { shelf: "s", count: 2 }));
      expect(a.status).toBe(200);
      expect(a.headers["content-type"]).toBe("application/connect+proto");
      const frames = bodyOf(a);
      expect(frames.map((f) => f.flags)).toEqual([0, 0, 0x02]);
      expect(bookNames(frames.slice(0, 2))).toEqual(["s/0", "s/1"]);
      expect(JSON.parse(frames[2]?.data.toString() ?? "")).toEqual({ metadata: { "x-trailer": ["t, u"] } });
      // An error is in the end-stream message, with the HTTP status still 200.
      const err = await call(
        connectProto,
        version,
        watch(connectProto, { shelf: "details", count: 1, failAfter: true }),
      );
      expect(err.status).toBe(200);
      const errFrames = bodyOf(err);
      expect(errFrames.map((f) => f.flags)).toEqual([0, 0x02]);
      const end = JSON.parse(errFrames[1]?.data.toString() ?? "") as {
        error: { code: string; message: string; details: { type: string; value: string }[] };
        metadata: Record<string, string[]>;
      };
      expect(end.error.code).toBe("failed_precondition");
      expect(end.error.message).toBe("no: a=b, 100% café");
      expect(end.error.details[0]?.type).toBe("google.rpc.ErrorInfo");
      // Connect's base64 may be unpadded.
      expect(
        fromBinary(ErrorInfoSchema, Buffer.from(end.error.details[0]?.value ?? "", "base64")),
      ).toMatchObject({ reason: "R" });
      expect(end.metadata).toEqual({ "x-meta": ["m"], "x-trailer": ["t, u"] });
      // JSON messages are JSON; compression is negotiated with connect-accept-encoding.
      const json = await call(connectJson, version, watch(connectJson, { shelf: "big", count: 1 }), {
        "connect-accept-encoding": "gzip",
      });
      expect(json.headers["connect-content-encoding"]).toBe("gzip");
      const jsonFrames = bodyOf(json);
      expect(jsonFrames.map((f) => f.flags)).toEqual([1, 0x02]);
      expect(JSON.parse(gunzipSync(jsonFrames[0]?.data ?? Buffer.alloc(0)).toString())).toMatchObject({
        name: "big/0",
      });
      const malformed = await call(connectProto, version, envelope(Buffer.from([0xff, 0xff, 0xff])));
      expect(JSON.parse(bodyOf(malformed)[0]?.data.toString() ?? "")).toMatchObject({
        error: { code: "invalid_argument", message: "Malformed request message" },
      });
      const unknownField = await call(connectJson, version, envelope(Buffer.from('{"nope":1}')));
      expect(JSON.parse(bodyOf(unknownField)[0]?.data.toString() ?? "")).toMatchObject({
        error: { code: "invalid_argument" },
      });
    },
  );
});
