import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BookSchema,
  LibraryService,
  type Book,
  type WatchShelfRequest,
} from "../../gen/testing/transcode/v1/transcode_pb.js";
import { AppError, isAppErrorCode, toConnectError } from "../../src/errors/index.js";
import { composeEdge, exchangeKey, type Exchange } from "../../src/edge/index.js";
import { createConnectOptions } from "../../src/protocols/connect-options.js";
import { createDispatch } from "../../src/protocols/dispatch.js";
import { createCallPipeline } from "../../src/call/pipeline.js";
import { createRestHandler } from "../../src/protocols/rest/rest-handler.js";
import { captureLog } from "../support/log-capture.js";

/** What the test interceptor saw of each call. */
interface Seen {
  readonly method: string;
  readonly info: HttpRequestInfo | undefined;
  readonly authorization: string | null;
  readonly xTest: string | null;
  readonly cookie: string | null;
  readonly timeoutMs: number | undefined;
}

const seen: Seen[] = [];
/** The HTTP request line a call came with, as the exchange holds it. */
function requestInfo(exchange: Exchange | undefined): HttpRequestInfo | undefined {
  return exchange && { method: exchange.method, path: exchange.path, query: exchange.query };
}
interface HttpRequestInfo {
  readonly method: string;
  readonly path: string;
  readonly query: string;
}
const recordingInterceptor: Interceptor = (next) => async (req) => {
  seen.push({
    method: req.method.name,
    info: requestInfo(req.contextValues.get(exchangeKey)),
    authorization: req.header.get("authorization"),
    xTest: req.header.get("x-test"),
    cookie: req.header.get("cookie"),
    timeoutMs: req.header.has("connect-timeout-ms")
      ? Number(req.header.get("connect-timeout-ms"))
      : undefined,
  });
  if (req.header.get("x-deny") === "1") throw toConnectError(new AppError("unauthenticated"));
  return next(req);
};

// Resolved by WatchShelf when its call's signal aborts (the caller went away).
let watchAborted: (() => void) | undefined;

function book(fields: Partial<Record<string, unknown>> = {}): Record<string, unknown> {
  return {
    name: "",
    title: "",
    pages: 0,
    genre: "GENRE_UNSPECIFIED",
    subtitle: null,
    tags: [],
    counts: {},
    editors: null,
    huge: 0,
    ...fields,
  };
}

async function* watchShelf(req: WatchShelfRequest, signal: AbortSignal): AsyncGenerator<Book> {
  for (let i = 0; i < req.count; i++) {
    yield create(BookSchema, { name: `${req.shelf}/books/${String(i)}`, pages: BigInt(i) });
  }
  if (req.failAfter) {
    throw toConnectError(
      new AppError("rate_limited", { retryAfterMs: 1500, headers: { "ratelimit-limit": "10" } }),
    );
  }
  if (req.hang) {
    await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    watchAborted?.();
  }
}

const log = captureLog();
const interceptors = [recordingInterceptor];
// The server's own dispatcher (codecs, fallback lane, REST) behind the edge, as src/app.ts composes it.
const adapter = composeEdge({
  entries: [],
  dispatch: createDispatch({
    connectOptions: createConnectOptions({ interceptors, bodyLimitBytes: 1024 }),
    logger: log.logger,
    routes: (connectRouter) => {
      const router = connectRouter;
      router.service(LibraryService, {
        getBook: (req, ctx) => {
          ctx.responseHeader.set("x-served-by", "library");
          ctx.responseTrailer.set("x-trailer", "t");
          return req;
        },
        createBook: (req) => req,
        updateBook: (req) => req,
        deleteBook: (req) => req,
        archiveBook: (req) => req,
        searchBooks: (req) => req,
        getFile: (req) => req,
        listBooks: (req) => ({
          books: [
            { name: `${req.parent}/books/1`, pages: 1741569952n, huge: 2n ** 64n - 1n, counts: { read: 5n } },
          ],
          nextPageToken: String(req.pageSize),
        }),
        watchShelf: (req, ctx) => watchShelf(req, ctx.signal),
        ping: (req) => ({ kind: `pong ${req.kind}` }),
        hidden: (req) => req,
        fail: (req) => {
          if (isAppErrorCode(req.kind)) {
            throw toConnectError(
              req.kind === "rate_limited"
                ? new AppError("rate_limited", { retryAfterMs: 2500, headers: { "ratelimit-limit": "60" } })
                : req.kind === "upstream_rejected"
                  ? new AppError("upstream_rejected", { message: "max_tokens is too large" })
                  : new AppError(req.kind),
            );
          }
          if (req.kind === "not_found") throw new ConnectError("nope", Code.NotFound);
          if (req.kind === "aborted") throw new ConnectError("try again", Code.Aborted);
          throw new Error("boom with sk-secretsecretsecret");
        },
      });
    },
  }),
});

const server1 = http.createServer(adapter);
const server2 = http2.createServer(adapter);
let base1 = "";
let base2 = "";

beforeAll(async () => {
  await new Promise<void>((resolve) => server1.listen(0, "127.0.0.1", resolve));
  await new Promise<void>((resolve) => server2.listen(0, "127.0.0.1", resolve));
  base1 = `http://127.0.0.1:${String((server1.address() as AddressInfo).port)}`;
  base2 = `http://127.0.0.1:${String((server2.address() as AddressInfo).port)}`;
});

afterAll(async () => {
  server1.closeAllConnections();
  await new Promise<void>((resolve) => server1.close(() => resolve()));
  await new Promise<void>((resolve) => server2.close(() => resolve()));
});

const json = { "content-type": "application/json" };

function s7(code: number, status: string, message: string): unknown {
  return { error: { code, status, message }, detail: message };
}

/** The 413 body: the exact message, the limit in `error.details` (an ErrorInfo as Google's REST APIs write it). */
function tooLarge(limitBytes: number): unknown {
  const message = "Request too large";
  const info = {
    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
    reason: "request_too_large",
    domain: "api-key-server",
    metadata: { limit_bytes: String(limitBytes) },
  };
  return { error: { code: 413, status: "RESOURCE_EXHAUSTED", message, details: [info] }, detail: message };
}

interface Case {
  readonly name: string;
  readonly method: string;
  readonly path: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  readonly status: number;
  readonly json: unknown;
  readonly responseHeaders?: Record<string, string | null>;
}

const cases: Case[] = [
  {
    name: "GET with a multi-segment variable, dotted, repeated and enum query parameters",
    method: "GET",
    path:
      "/v1/shelves/s1/books/b%201%2Fx?filter.author_name=Ann&filter.minPages=5&tags=a&tags=b%20c&genre=GENRE_FICTION" +
      "&genres=GENRE_SCIENCE&genres=1&verbose=true&limit=3&big=9007199254740993&ratio=0.5",
    status: 200,
    json: {
      name: "shelves/s1/books/b 1%2Fx",
      filter: { author_name: "Ann", min_pages: 5 },
      tags: ["a", "b c"],
      genre: "GENRE_FICTION",
      verbose: true,
      limit: 3,
      genres: ["GENRE_SCIENCE", "GENRE_FICTION"],
      big: "9007199254740993",
      ratio: 0.5,
      labels: {},
    },
    responseHeaders: { "content-type": "application/json", "x-served-by": "library", "x-trailer": "t" },
  },
  {
    name: "additional binding with a single-segment variable decodes %2F",
    method: "GET",
    path: "/v1/books/b%2Fc",
    status: 200,
    json: {
      name: "b/c",
      tags: [],
      genre: "GENRE_UNSPECIFIED",
      verbose: false,
      limit: 0,
      genres: [],
      big: 0,
      ratio: 0,
      labels: {},
    },
  },
  {
    name: 'POST with body "field", the rest from path and query, JSON names accepted',
    method: "POST",
    path: "/v1/shelves/s1/books?request_id=r1",
    headers: json,
    body: '{"title":"T","pages":"12","author":{"displayName":"Al"},"notes":[]}',
    status: 200,
    json: {
      parent: "shelves/s1",
      book: book({ title: "T", pages: 12, author: { display_name: "Al", age: 0, email: null } }),
      request_id: "r1",
    },
  },
  {
    name: 'PATCH with a nested path field and body "*": the path wins over the body',
    method: "PATCH",
    path: "/v1/shelves/s1/books/b1",
    headers: { "content-type": "application/json; charset=utf-8" },
    body: '{"book":{"name":"ignored","title":"New"},"allow_missing":true}',
    status: 200,
    json: { book: book({ name: "shelves/s1/books/b1", title: "New" }), allow_missing: true },
  },
  {
    name: 'PUT additional binding with body "book" and a query parameter',
    method: "PUT",
    path: "/v1/shelves/s1/books/b1?allow_missing=true",
    headers: json,
    body: '{"title":"P"}',
    status: 200,
    json: { book: book({ name: "shelves/s1/books/b1", title: "P" }), allow_missing: true },
  },
  {
    name: "DELETE without a body",
    method: "DELETE",
    path: "/v1/shelves/s1/books/b1?force=true",
    status: 200,
    json: { name: "shelves/s1/books/b1", force: true },
  },
  {
    name: "a :verb suffix",
    method: "POST",
    path: "/v1/shelves/s1/books/b1:archive",
    headers: json,
    body: '{"force":true}',
    status: 200,
    json: { name: "shelves/s1/books/b1", force: true },
  },
  {
    name: "a verb route wins over a plain variable that would also match",
    method: "POST",
    path: "/v1/fail/x:ping",
    status: 200,
    json: { kind: "pong x" },
  },
  {
    name: "a custom HTTP method; query is ignored with body *",
    method: "SEARCH",
    path: "/v1/books?ignored=1",
    headers: json,
    body: '{"name":"n","genre":"GENRE_SCIENCE","labels":{"k":"v"}}',
    status: 200,
    json: {
      name: "n",
      tags: [],
      genre: "GENRE_SCIENCE",
      verbose: false,
      limit: 0,
      genres: [],
      big: 0,
      ratio: 0,
      labels: { k: "v" },
    },
  },
  {
    name: "** matches several segments, keeping %2F",
    method: "GET",
    path: "/v1/files/a/b%20c/d%2Fe.txt",
    status: 200,
    json: { path: "a/b c/d%2Fe.txt" },
  },
  {
    name: "response_body answers with one field; 64-bit integers as numbers when safe",
    method: "GET",
    path: "/v1/shelves/s1/books?page_size=2",
    status: 200,
    json: [
      book({
        name: "shelves/s1/books/1",
        pages: 1741569952,
        huge: "18446744073709551615",
        counts: { read: 5 },
      }),
    ],
  },
  {
    name: "unknown path",
    method: "GET",
    path: "/nope",
    status: 404,
    json: s7(404, "NOT_FOUND", "Not found"),
  },
  {
    name: "known path, wrong method",
    method: "POST",
    path: "/v1/shelves/s1/books/b1",
    status: 405,
    json: s7(405, "UNIMPLEMENTED", "Method not allowed"),
    responseHeaders: { allow: "GET, PATCH, PUT, DELETE" },
  },
  {
    name: "unknown body field",
    method: "POST",
    path: "/v1/fail/x",
    headers: json,
    body: '{"kind":"x","bogus":1}',
    status: 400,
    json: s7(400, "INVALID_ARGUMENT", 'Unknown field "bogus"'),
  },
  {
    name: "wrong field type",
    method: "POST",
    path: "/v1/shelves/s1/books",
    headers: json,
    body: '{"pages":"abc"}',
    status: 400,
    json: s7(400, "INVALID_ARGUMENT", 'Invalid value for field "pages"'),
  },
  {
    name: "unknown query parameter",
    method: "GET",
    path: "/v1/shelves/s1/books/b1?nope=1",
    status: 400,
    json: s7(400, "INVALID_ARGUMENT", 'Unknown query parameter "nope"'),
  },
  {
    name: "query parameter naming a message field",
    method: "GET",
    path: "/v1/shelves/s1/books/b1?filter=1",
    status: 400,
    json: s7(400, "INVALID_ARGUMENT", 'Unknown query parameter "filter"'),
  },
  {
    name: "query parameter into the body field",
    method: "POST",
    path: "/v1/shelves/s1/books?book.title=x",
    status: 400,
    json: s7(400, "INVALID_ARGUMENT", 'Query parameter "book.title" is part of the body'),
  },
  {
    name: "singular query parameter given twice",
    method: "GET",
    path: "/v1/shelves/s1/books/b1?limit=1&limit=2",
    status: 400,
    json: s7(400, "INVALID_ARGUMENT", 'Query parameter "limit" is repeated'),
  },
  {
    name: "bad boolean",
    method: "GET",
    path: "/v1/shelves/s1/books/b1?verbose=yes",
    status: 400,
    json: s7(400, "INVALID_ARGUMENT", 'Invalid value for field "verbose"'),
  },
  {
    name: "bad enum name",
    method: "GET",
    path: "/v1/shelves/s1/books/b1?genre=NOPE",
    status: 400,
    json: s7(400, "INVALID_ARGUMENT", 'Invalid value for field "genre"'),
  },
  {
    name: "bad enum name in the body",
    method: "SEARCH",
    path: "/v1/books",
    headers: json,
    body: '{"genres":["GENRE_FICTION","NOPE"]}',
    status: 400,
    json: s7(400, "INVALID_ARGUMENT", "Invalid value for enum testing.transcode.v1.Genre"),
  },
  {
    name: "malformed JSON",
    method: "POST",
    path: "/v1/fail/x",
    headers: json,
    body: '{"kind":',
    status: 400,
    json: s7(400, "INVALID_ARGUMENT", "Malformed JSON body"),
  },
  {
    name: "body * that is not an object",
    method: "POST",
    path: "/v1/fail/x",
    headers: json,
    body: "[1]",
    status: 400,
    json: s7(400, "INVALID_ARGUMENT", "Request body must be a JSON object"),
  },
  {
    name: "wrong content type",
    method: "POST",
    path: "/v1/fail/x",
    headers: { "content-type": "text/plain" },
    body: "{}",
    status: 415,
    json: s7(415, "INVALID_ARGUMENT", "Content-Type must be application/json"),
  },
  {
    name: "a body on a method without one",
    method: "DELETE",
    path: "/v1/shelves/s1/books/b1",
    headers: json,
    body: "{}",
    status: 400,
    json: s7(400, "INVALID_ARGUMENT", "This method takes no request body"),
  },
  {
    name: "a body over maxBodyBytes",
    method: "POST",
    path: "/v1/fail/x",
    headers: json,
    body: JSON.stringify({ kind: "x".repeat(2000) }),
    status: 413,
    json: tooLarge(1024),
  },
  ...(
    [
      ["unauthenticated", 401, "UNAUTHENTICATED", "Unauthorized"],
      ["forbidden", 403, "PERMISSION_DENIED", "Forbidden"],
      ["product_not_found", 404, "NOT_FOUND", "Product not found"],
      ["model_not_supported", 400, "INVALID_ARGUMENT", "Model not supported"],
      ["request_too_large", 413, "RESOURCE_EXHAUSTED", "Request too large"],
      ["upstream_error", 502, "UNAVAILABLE", "Upstream service error"],
      ["upstream_rejected", 400, "INVALID_ARGUMENT", "max_tokens is too large"],
      ["upstream_timeout", 504, "DEADLINE_EXCEEDED", "Upstream timeout"],
      ["not_ready", 503, "UNAVAILABLE", "Service not ready"],
      ["internal", 500, "INTERNAL", "Internal server error"],
      ["not_found", 404, "NOT_FOUND", "nope"],
      ["aborted", 409, "ABORTED", "try again"],
    ] as const
  ).map(([kind, status, name, message]): Case => ({
    name: `handler error ${kind}`,
    method: "POST",
    path: `/v1/fail/${kind}`,
    status,
    json: s7(status, name, message),
  })),
  {
    name: "handler error rate_limited with Retry-After and rate-limit headers",
    method: "POST",
    path: "/v1/fail/rate_limited",
    status: 429,
    json: s7(429, "RESOURCE_EXHAUSTED", "Rate limit exceeded"),
    responseHeaders: { "retry-after": "3", "ratelimit-limit": "60" },
  },
  {
    name: "an interceptor rejecting the call",
    method: "GET",
    path: "/v1/books/b",
    headers: { "x-deny": "1" },
    status: 401,
    json: s7(401, "UNAUTHENTICATED", "Unauthorized"),
  },
  {
    name: "an error before the first streamed message is an ordinary REST error",
    method: "GET",
    path: "/v1/shelves/s1:watch?fail_after=true",
    status: 429,
    json: s7(429, "RESOURCE_EXHAUSTED", "Rate limit exceeded"),
    responseHeaders: { "retry-after": "2", "ratelimit-limit": "10" },
  },
];

describe("REST transcoder over HTTP/1.1", () => {
  it.each(cases)("$name", async (c) => {
    const res = await fetch(base1 + c.path, {
      method: c.method,
      headers: c.headers ?? {},
      ...(c.body === undefined ? {} : { body: c.body }),
    });
    expect(res.status).toBe(c.status);
    for (const [name, value] of Object.entries(c.responseHeaders ?? {}))
      expect(res.headers.get(name)).toBe(value);
    if (c.status !== 200) expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.json()).toStrictEqual(c.json);
  });

  it("answers 500 without the cause's text for an unexpected handler failure", async () => {
    const res = await fetch(`${base1}/v1/fail/plain`, { method: "POST" });
    expect(res.status).toBe(500);
    const body = await res.text();
    expect(JSON.parse(body)).toStrictEqual(s7(500, "INTERNAL", "Internal server error"));
    expect(body).not.toContain("sk-");
  });

  it("answers 413 for a chunked body over the limit without a content-length", async () => {
    const chunk = new TextEncoder().encode(`{"kind":"${"x".repeat(700)}`);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(chunk);
        controller.enqueue(chunk);
        controller.close();
      },
    });
    const res = await fetch(`${base1}/v1/fail/x`, {
      method: "POST",
      headers: json,
      body: stream,
      duplex: "half",
    });
    expect(res.status).toBe(413);
    expect(await res.json()).toStrictEqual(tooLarge(1024));
  });

  it("runs the router's interceptors with the caller's headers, a deadline and the HTTP request line", async () => {
    seen.length = 0;
    const body = '{"title":"T"}';
    const res = await fetch(`${base1}/v1/shelves/s%201/books?request_id=r%201`, {
      method: "POST",
      headers: { ...json, authorization: "Bearer abc", "x-test": "yes", cookie: "c=1", "grpc-timeout": "5S" },
      body,
    });
    expect(res.status).toBe(200);
    expect(seen).toStrictEqual([
      {
        method: "CreateBook",
        info: {
          method: "POST",
          path: "/v1/shelves/s%201/books",
          query: "request_id=r%201",
        },
        authorization: "Bearer abc",
        xTest: "yes",
        cookie: null,
        timeoutMs: 5000,
      },
    ]);
  });

  it("gives interceptors the request info of a call without a body", async () => {
    seen.length = 0;
    const res = await fetch(`${base1}/v1/books/b?limit=1`, { headers: { "connect-timeout-ms": "700" } });
    expect(res.status).toBe(200);
    expect(seen[0]?.info).toStrictEqual({
      method: "GET",
      path: "/v1/books/b",
      query: "limit=1",
    });
    expect(seen[0]?.timeoutMs).toBe(700);
  });

  it.each([
    {
      name: "streams each message as an SSE data event, then OpenAI's data: [DONE]",
      path: "/v1/shelves/s1:watch?count=2",
      events: [
        `data: ${JSON.stringify(book({ name: "shelves/s1/books/0" }))}\n\n`,
        `data: ${JSON.stringify(book({ name: "shelves/s1/books/1", pages: 1 }))}\n\n`,
        "data: [DONE]\n\n",
      ],
    },
    {
      name: "ends with an error event when the stream fails after a message",
      path: "/v1/shelves/s1:watch?count=1&fail_after=true",
      events: [
        `data: ${JSON.stringify(book({ name: "shelves/s1/books/0" }))}\n\n`,
        `event: error\ndata: ${JSON.stringify(s7(429, "RESOURCE_EXHAUSTED", "Rate limit exceeded"))}\n\n`,
      ],
    },
    {
      name: "answers an empty stream with only data: [DONE]",
      path: "/v1/shelves/s1:watch",
      events: ["data: [DONE]\n\n"],
    },
  ])("$name", async ({ path, events }) => {
    const res = await fetch(base1 + path);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(res.headers.get("cache-control")).toBe("no-cache");
    expect(await res.text()).toBe(events.join(""));
  });

  it("aborts the streaming handler when the client disconnects", async () => {
    const aborted = new Promise<void>((resolve) => (watchAborted = resolve));
    const controller = new AbortController();
    const res = await fetch(`${base1}/v1/shelves/s1:watch?count=1&hang=true`, { signal: controller.signal });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toBe(
      `data: ${JSON.stringify(book({ name: "shelves/s1/books/0" }))}\n\n`,
    );
    controller.abort();
    await aborted;
  });

  it("never reaches the handler of an RPC without REST binding", async () => {
    const res = await fetch(`${base1}/v1/hidden`, { method: "POST" });
    expect(res.status).toBe(404);
  });
});

interface H2Answer {
  readonly status: number;
  readonly headers: http2.IncomingHttpHeaders;
  readonly body: string;
}

function h2Request(
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(base2);
    session.on("error", reject);
    const req = session.request({ ":method": method, ":path": path, ...headers });
    let status = 0;
    let responseHeaders: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on("response", (h) => {
      status = Number(h[":status"]);
      responseHeaders = h;
    });
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      session.close();
      resolve({ status, headers: responseHeaders, body: Buffer.concat(chunks).toString("utf8") });
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("REST transcoder over HTTP/2 (h2c)", () => {
  it.each([
    {
      name: "unary GET with query",
      method: "GET",
      path: "/v1/shelves/s1/books/b1?force=1&tags=x",
      status: 400,
      body: JSON.stringify(s7(400, "INVALID_ARGUMENT", 'Unknown query parameter "force"')),
    },
    {
      name: "unary POST with a body",
      method: "POST",
      path: "/v1/shelves/s1/books/b1:archive",
      headers: json,
      body: '{"force":true}',
      status: 200,
      answer: JSON.stringify({ name: "shelves/s1/books/b1", force: true }),
    },
    {
      name: "unknown path",
      method: "GET",
      path: "/nope",
      status: 404,
      body: JSON.stringify(s7(404, "NOT_FOUND", "Not found")),
    },
    {
      name: "a body over maxBodyBytes",
      method: "POST",
      path: "/v1/fail/x",
      headers: json,
      body: JSON.stringify({ kind: "x".repeat(2000) }),
      status: 413,
      answer: JSON.stringify(tooLarge(1024)),
    },
    {
      name: "server streaming as SSE",
      method: "GET",
      path: "/v1/shelves/s1:watch?count=1",
      status: 200,
      answer: `data: ${JSON.stringify(book({ name: "shelves/s1/books/0" }))}\n\ndata: [DONE]\n\n`,
    },
  ])("$name", async (c) => {
    const sendBody = "answer" in c ? c.body : undefined;
    const expected = "answer" in c ? c.answer : c.body;
    const res = await h2Request(c.method, c.path, "headers" in c ? c.headers : {}, sendBody);
    expect(res.status).toBe(c.status);
    expect(res.body).toBe(expected);
  });
});

describe("createRestHandler options", () => {
  it.each([-1, 1.5, Number.NaN])("rejects maxBodyBytes %s", (maxBodyBytes) => {
    expect(() =>
      createRestHandler({
        services: [],
        pipeline: createCallPipeline({ logger: log.logger, interceptors: [] }),
        maxBodyBytes,
      }),
    ).toThrow(`createRestHandler: maxBodyBytes must be a non-negative integer, got ${String(maxBodyBytes)}`);
  });
});
