import * as http from "node:http";
import * as http2 from "node:http2";
import { toBinary, toJsonString } from "@bufbuild/protobuf";
import { fromRestJson } from "../../src/json/index.js";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatCompletionRequestSchema, ChatService } from "../../gen/apikeyserver/v1/chat_pb.js";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { createE2eClients, e2eProducts } from "../support/e2e-clients.js";
import { fixture } from "../upstream/helpers.js";
import { behaviors, startMockProvider, type MockProvider } from "../support/mock-provider.js";
import { curl } from "../support/server-clients.js";
import { transportOf } from "../support/transports.js";

// The three wrong answers of issue 11 item 3, fixed where errors become wire errors once
// (src/call/wire-error.ts, src/protocols/fallback/connect-node-lane.ts, docs/architecture.md), over every protocol.

const maxBodyBytes = 4096;
const service = "apikeyserver.v1.ChatService";
const tooBig = { model: "gpt-4o-mini", messages: [{ role: "user", content: "x".repeat(maxBodyBytes) }] };
const hello = { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }] };
/** The same request in Connect JSON: protobuf's canonical form (the typed `content` oneof), not OpenAI's. */
const connectJson = toJsonString(
  ChatCompletionRequestSchema,
  fromRestJson(ChatCompletionRequestSchema, { ...hello, product: "product-dev" }),
);

/** Waits for the access line of `rpc` number `count` (lines come when the response is over). */
async function accessLines(app: AppHarness, from: number, rpc: string, count = 1) {
  const lines = () =>
    app.logs
      .records()
      .slice(from)
      .filter((r) => r["rpc"] === rpc && typeof r["httpRequest"] === "object");
  for (let i = 0; i < 400 && lines().length < count; i++) await new Promise((r) => setTimeout(r, 25));
  return lines();
}

function frame(message: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.byteLength, 1);
  return Buffer.concat([head, message]);
}

describe("a request over the body limit is RESOURCE_EXHAUSTED `Request too large` everywhere", () => {
  let app: AppHarness;
  let auth: string;
  beforeAll(async () => {
    app = await startApp({ env: { API_KEY_SERVER_MAX_BODY_BYTES: String(maxBodyBytes) } });
    auth = `Bearer ${await app.token()}`;
  });
  afterAll(() => app.close());

  const request = () => fromRestJson(ChatCompletionRequestSchema, { ...tooBig, product: "product-dev" });
  const transports: [string, "unary" | "stream", () => Transport][] = [];
  for (const kind of ["unary", "stream"] as const) {
    for (const name of [
      "Connect JSON, HTTP/1.1",
      "Connect binary, HTTP/2",
      "gRPC, HTTP/2",
      "gRPC-Web, HTTP/1.1",
    ] as const) {
      transports.push([name, kind, () => transportOf(name, app.url)]);
    }
  }

  it.each(transports)("%s, %s", async (_name, kind, transport) => {
    const client = createClient(ChatService, transport());
    const headers = { authorization: auth };
    const err = await (
      kind === "unary"
        ? client.createChatCompletion(request(), { headers })
        : (async () => {
            for await (const _ of client.streamChatCompletion(request(), { headers })) {
              // no message expected
            }
          })()
    ).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.ResourceExhausted);
    expect(err?.rawMessage).toBe("Request too large");
  });

  it.each([
    ["--http1.1", []],
    ["--http1.1", ["-H", "transfer-encoding: chunked"]],
    ["--http2-prior-knowledge", []],
  ])("Connect unary over %s %j answers HTTP 413 and is logged 413, not 429", async (flag, extra) => {
    const from = app.logs.lines.length;
    const res = await curl([
      flag,
      ...extra,
      "-H",
      "content-type: application/json",
      "-H",
      `authorization: ${auth}`,
      "--data-binary",
      JSON.stringify({ ...tooBig, product: "product-dev" }),
      `${app.url}/${service}/CreateChatCompletion`,
    ]);
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body)).toMatchObject({ code: "resource_exhausted", message: "Request too large" });
    const [line, ...more] = await accessLines(app, from, `${service}/CreateChatCompletion`);
    expect(more).toEqual([]);
    expect(line).toMatchObject({
      severity: "WARNING",
      code: "RESOURCE_EXHAUSTED",
      protocol: "connect",
      httpRequest: { status: 413 },
    });
  });

  it("REST answers 413 in the error table's body", async () => {
    const res = await fetch(`${app.url}/v1/chat/product-dev`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: auth },
      body: JSON.stringify(tooBig),
    });
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({
      error: { code: 413, status: "RESOURCE_EXHAUSTED", message: "Request too large" },
    });
  });

  it("grpc-js (the gRPC codec) reads RESOURCE_EXHAUSTED Request too large", async () => {
    const client = new grpc.Client(`127.0.0.1:${app.port}`, grpc.credentials.createInsecure());
    try {
      const md = new grpc.Metadata();
      md.set("authorization", auth);
      const error = await new Promise<grpc.ServiceError | null>((resolve) => {
        client.makeUnaryRequest(
          `/${service}/CreateChatCompletion`,
          (m: Uint8Array) => Buffer.from(m),
          (b: Buffer) => b,
          toBinary(ChatCompletionRequestSchema, request()),
          md,
          (e) => resolve(e),
        );
      });
      expect({ code: error?.code, details: error?.details }).toEqual({
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: "Request too large",
      });
    } finally {
      client.close();
    }
  });
});

describe("a client that cancels or resets is logged 499 at INFO, never 5xx at ERROR", () => {
  let mock: MockProvider;
  let app: AppHarness;
  let auth: string;
  beforeAll(async () => {
    mock = await startMockProvider(behaviors.delay(60_000, behaviors.json(200, {})));
    app = await startApp({ products: e2eProducts(mock.url) });
    auth = `Bearer ${await app.token()}`;
  });
  afterAll(async () => {
    await app.close();
    await mock.close();
  });

  const grpcBody = () =>
    frame(
      toBinary(
        ChatCompletionRequestSchema,
        fromRestJson(ChatCompletionRequestSchema, { ...hello, product: "product-dev" }),
      ),
    );

  /** Opens an h2c stream to `method` with gRPC headers; sends the message unless `withMessage` is false. */
  function h2Stream(method: string, contentType: string, body: Buffer | undefined) {
    const session = http2.connect(app.url);
    session.on("error", () => undefined);
    const stream = session.request({
      ":method": "POST",
      ":path": `/${service}/${method}`,
      "content-type": contentType,
      te: "trailers",
      authorization: auth,
    });
    stream.on("error", () => undefined);
    stream.resume();
    if (body !== undefined) stream.write(body);
    return { session, stream };
  }

  const cases: {
    name: string;
    rpc: string;
    /** Starts the call; resolves with a function that cancels it. */
    start: () => Promise<() => void> | (() => void);
    waitsForUpstream: boolean;
  }[] = [
    {
      name: "grpc-js cancels a unary call (the gRPC codec)",
      rpc: "CreateChatCompletion",
      waitsForUpstream: true,
      start: () => {
        const client = new grpc.Client(`127.0.0.1:${app.port}`, grpc.credentials.createInsecure());
        const md = new grpc.Metadata();
        md.set("authorization", auth);
        const call = client.makeUnaryRequest(
          `/${service}/CreateChatCompletion`,
          (m: Buffer) => m,
          (b: Buffer) => b,
          grpcBody().subarray(5),
          md,
          () => undefined,
        );
        return () => {
          call.cancel();
          client.close();
        };
      },
    },
    {
      name: "grpc-js cancels a server stream (Connect path)",
      rpc: "StreamChatCompletion",
      waitsForUpstream: true,
      start: () => {
        const client = new grpc.Client(`127.0.0.1:${app.port}`, grpc.credentials.createInsecure());
        const md = new grpc.Metadata();
        md.set("authorization", auth);
        const call = client.makeServerStreamRequest(
          `/${service}/StreamChatCompletion`,
          (m: Buffer) => m,
          (b: Buffer) => b,
          grpcBody().subarray(5),
          md,
        );
        call.on("error", () => undefined);
        call.on("data", () => undefined);
        return () => {
          call.cancel();
          client.close();
        };
      },
    },
    ...(["CreateChatCompletion", "StreamChatCompletion"] as const).map((method) => ({
      name: `RST_STREAM before the request message (${method})`,
      rpc: method,
      waitsForUpstream: false,
      start: async () => {
        const { session, stream } = h2Stream(method, "application/grpc", undefined);
        await new Promise((r) => setTimeout(r, 50));
        return () => {
          stream.close(http2.constants.NGHTTP2_CANCEL);
          session.close();
        };
      },
    })),
    ...(["CreateChatCompletion", "StreamChatCompletion"] as const).map((method) => ({
      name: `RST_STREAM after the request message (${method})`,
      rpc: method,
      waitsForUpstream: true,
      start: () => {
        const { session, stream } = h2Stream(method, "application/grpc", grpcBody());
        stream.end();
        return () => {
          stream.close(http2.constants.NGHTTP2_CANCEL);
          session.close();
        };
      },
    })),
    {
      name: "RST_STREAM after a Connect streaming request (h2c)",
      rpc: "StreamChatCompletion",
      waitsForUpstream: true,
      start: () => {
        const json = Buffer.from(connectJson);
        const { session, stream } = h2Stream("StreamChatCompletion", "application/connect+json", frame(json));
        stream.end();
        return () => {
          stream.close(http2.constants.NGHTTP2_CANCEL);
          session.close();
        };
      },
    },
    ...(["/v1/chat/product-dev", "/v1/chat/product-dev:stream"] as const).map((path) => ({
      name: `HTTP/1.1 connection closed during a REST call (${path})`,
      rpc: path.endsWith(":stream") ? "StreamChatCompletion" : "CreateChatCompletion",
      waitsForUpstream: true,
      start: () => {
        const req = http.request(`${app.url}${path}`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: auth },
        });
        req.on("error", () => undefined);
        req.end(JSON.stringify(hello));
        return () => req.destroy();
      },
    })),
    {
      name: "HTTP/1.1 connection closed during a Connect unary call",
      rpc: "CreateChatCompletion",
      waitsForUpstream: true,
      start: () => {
        const req = http.request(`${app.url}/${service}/CreateChatCompletion`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: auth },
        });
        req.on("error", () => undefined);
        req.end(connectJson);
        return () => req.destroy();
      },
    },
  ];

  it.each(cases)("$name", async ({ rpc, start, waitsForUpstream }) => {
    const from = app.logs.lines.length;
    const requested = mock.requests.length;
    const cancel = await start();
    if (waitsForUpstream) await mock.whenRequested(requested + 1);
    cancel();
    const [line, ...more] = await accessLines(app, from, `${service}/${rpc}`);
    expect(more).toEqual([]);
    expect(line).toMatchObject({
      severity: "INFO",
      code: "CANCELLED",
      cut: "client",
      httpRequest: { status: 499 },
    });
    expect(line).not.toHaveProperty("error");
    // Nothing else about this call is an error either (the upstream abort is a cancel too).
    await new Promise((r) => setTimeout(r, 50));
    expect(
      app.logs
        .records()
        .slice(from)
        .filter((r) => r["severity"] === "ERROR"),
    ).toEqual([]);
  });
});

describe("a call cut at the end of the shutdown grace answers UNAVAILABLE, not CANCELLED", () => {
  let mock: MockProvider;
  let app: AppHarness;
  beforeAll(async () => {
    mock = await startMockProvider(behaviors.delay(60_000, behaviors.json(200, {})));
    app = await startApp({ products: e2eProducts(mock.url) });
  });
  afterAll(() => mock.close());

  it("over REST, Connect, gRPC (the gRPC codec) and gRPC-Web; each logged as a server-side cut", async () => {
    const auth = `Bearer ${await app.token()}`;
    const headers = { authorization: auth };
    const request = fromRestJson(ChatCompletionRequestSchema, { ...hello, product: "product-dev" });
    const failure = (p: Promise<unknown>) =>
      p.then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
    const rest = fetch(`${app.url}/v1/chat/product-dev`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: auth },
      body: JSON.stringify(hello),
    });
    const calls = [
      transportOf("Connect JSON, HTTP/1.1", app.url),
      transportOf("gRPC, HTTP/2", app.url),
      transportOf("gRPC-Web, HTTP/1.1", app.url),
    ].map((t) => failure(createClient(ChatService, t).createChatCompletion(request, { headers })));
    await mock.whenRequested(4);
    const from = app.logs.lines.length;
    const closed = app.close();
    const res = await rest;
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: { status: "UNAVAILABLE" } });
    for (const err of await Promise.all(calls)) expect(err?.code).toBe(Code.Unavailable);
    await closed;
    const lines = app.logs
      .records()
      .slice(from)
      .filter((r) => r["rpc"] === `${service}/CreateChatCompletion`);
    expect(lines).toHaveLength(4);
    for (const line of lines) {
      expect(line).toMatchObject({
        severity: "WARNING",
        code: "UNAVAILABLE",
        cut: "server",
        httpRequest: { status: 503 },
      });
    }
  });
});

describe("streams cut at the end of the shutdown grace end with a terminal UNAVAILABLE (issue 18, item 7)", () => {
  let mock: MockProvider;
  let app: AppHarness;
  beforeAll(async () => {
    // One chunk, then the provider keeps the stream open (a long answer still being written).
    const chunks = fixture<Record<string, unknown>[]>("chat-completion-chunks.json");
    mock = await startMockProvider(behaviors.sse(chunks.slice(0, 1), "stall"));
    app = await startApp({ products: e2eProducts(mock.url) });
  });
  afterAll(() => mock.close());

  it("REST (SSE event: error), Connect, gRPC and gRPC-Web streams; each logged as a server-side cut", async () => {
    const auth = `Bearer ${await app.token()}`;
    const clients = createE2eClients(app.url);
    const webClient = createClient(ChatService, transportOf("gRPC-Web, HTTP/1.1", app.url));
    const web = (async () => {
      const messages: unknown[] = [];
      try {
        const request = fromRestJson(ChatCompletionRequestSchema, { ...hello, product: "product-dev" });
        for await (const m of webClient.streamChatCompletion(request, { headers: { authorization: auth } })) {
          messages.push(m);
        }
        return { messages, err: undefined };
      } catch (e) {
        return { messages, err: ConnectError.from(e) };
      }
    })();
    const streams = (["rest", "connect", "grpc"] as const).map((p) =>
      clients.stream(p, "product-dev", hello, { authorization: auth }),
    );
    await mock.whenRequested(4);
    const from = app.logs.lines.length;
    // 3 s of grace: the calls are cut 500 ms before its end, with their first chunk long relayed.
    await app.close(3000);
    const [rest, connect, grpcStream] = await Promise.all(streams);
    clients.close();
    expect(rest?.status).toBe(200);
    expect(rest?.headers["content-type"]).toMatch(/^text\/event-stream/);
    expect(rest?.raw).toMatch(/\nevent: error\ndata: \{"error":\{"code":503,"status":"UNAVAILABLE"/);
    for (const outcome of [rest, connect, grpcStream]) {
      expect(outcome?.messages).toHaveLength(1);
      expect(outcome?.end.code).toBe("UNAVAILABLE");
    }
    const webOutcome = await web;
    expect(webOutcome.messages).toHaveLength(1);
    expect(webOutcome.err?.code).toBe(Code.Unavailable);

    const lines = app.logs
      .records()
      .slice(from)
      .filter((r) => r["rpc"] === `${service}/StreamChatCompletion`);
    expect(lines).toHaveLength(4);
    for (const line of lines) {
      expect(line).toMatchObject({
        severity: "WARNING",
        code: "UNAVAILABLE",
        cut: "server",
        httpRequest: { status: 503 },
      });
    }
  });
});
