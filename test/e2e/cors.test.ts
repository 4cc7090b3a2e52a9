/**
 * CORS on the composed server (README, "Web clients"), over HTTP/1.1 and h2c: preflights answered before
 * routing and auth on every surface, refused for other origins, and the CORS headers on every answer an
 * allowed page gets, errors included (a page cannot read an error it is not allowed to see).
 */
import * as http2 from "node:http2";
import { cors as connectCors } from "@connectrpc/connect";
import { create, toBinary } from "@bufbuild/protobuf";
import { request } from "undici";
import { ChatCompletionRequestSchema } from "../../gen/apikeyserver/v1/chat_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { webProducts } from "../support/web-products.js";

const page = "http://localhost:5173";
const other = "https://evil.example";

let app: AppHarness;
let token: string;
beforeAll(async () => {
  app = await startApp({
    products: webProducts,
    env: { API_KEY_SERVER_CORS_ORIGINS: `${page},https://*.example.org` },
  });
  token = await app.token({ claims: { products: ["product-dev", "product-limited"] } });
});
afterAll(async () => {
  await app.close();
});

interface Answer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

type Transport = "http/1.1" | "h2c";

async function send(
  transport: Transport,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<Answer> {
  if (transport === "http/1.1") {
    const res = await request(`${app.url}${path}`, { method: method as "GET", headers, body: body ?? null });
    const flat = Object.fromEntries(
      Object.entries(res.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : (v ?? "")]),
    );
    return { status: res.statusCode, headers: flat, body: await res.body.text() };
  }
  const session = http2.connect(app.url);
  try {
    const stream = session.request({ ":method": method, ":path": path, ...headers });
    stream.end(body);
    const [responseHeaders, text] = await Promise.all([
      new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        stream.once("response", resolve);
        stream.once("error", reject);
      }),
      (async () => {
        let out = "";
        for await (const chunk of stream) out += String(chunk);
        return out;
      })(),
    ]);
    const flat: Record<string, string> = {};
    for (const [k, v] of Object.entries(responseHeaders)) {
      if (!k.startsWith(":")) flat[k] = Array.isArray(v) ? v.join(", ") : String(v);
    }
    return { status: Number(responseHeaders[":status"]), headers: flat, body: text };
  } finally {
    session.close();
  }
}

/** The log lines matching `test`, once the access line (written when the response closes) is there. */
async function waitForLines(
  test: (record: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown>[]> {
  for (let i = 0; i < 200; i++) {
    const found = app.logs.records().filter(test);
    if (found.length > 0) return found;
    await new Promise((resolve) => setImmediate(resolve));
  }
  return [];
}

const corsHeaders = (answer: Answer) =>
  Object.keys(answer.headers)
    .filter((k) => k.startsWith("access-control-"))
    .sort();

const preflightPaths = [
  ["REST", "/v1/chat/product-dev"],
  ["REST stream", "/v1/chat/product-dev:stream"],
  ["REST models", "/v1/chat/product-dev/models"],
  ["Connect and gRPC-Web", "/apikeyserver.v1.ChatService/CreateChatCompletion"],
  ["OpenAI-compatible", "/openai/product-dev/v1/chat/completions"],
  ["an unknown path", "/nowhere"],
] as const;
const transports: readonly Transport[] = ["http/1.1", "h2c"];
const cases = transports.flatMap((t) => preflightPaths.map(([what, path]) => [t, what, path] as const));

describe("preflight", () => {
  it.each(cases)("%s %s: an allowed origin gets 204 with the allow headers", async (transport, _, path) => {
    const answer = await send(transport, "OPTIONS", path, {
      origin: page,
      "access-control-request-method": "POST",
      "access-control-request-headers": "authorization, content-type, connect-protocol-version",
    });
    expect(answer.status).toBe(204);
    expect(answer.body).toBe("");
    expect(answer.headers["content-length"]).toBeUndefined();
    expect(answer.headers).toMatchObject({
      vary: "Origin",
      "access-control-allow-origin": page,
      "access-control-allow-methods": connectCors.allowedMethods.join(", "),
      "access-control-max-age": "7200",
    });
    const allowed = answer.headers["access-control-allow-headers"]?.split(", ") ?? [];
    for (const header of [
      ...connectCors.allowedHeaders.map((h) => h.toLowerCase()),
      "authorization",
      "x-api-key-id",
      "x-api-timestamp",
      "x-api-nonce",
      "x-api-signature",
      // The official Anthropic SDK in a browser.
      "x-api-key",
      "anthropic-version",
      "anthropic-beta",
      "anthropic-dangerous-direct-browser-access",
    ]) {
      expect(allowed).toContain(header);
    }
    expect(corsHeaders(answer)).not.toContain("access-control-allow-credentials");
  });

  it.each(cases)("%s %s: another origin gets 403 and no CORS header", async (transport, _, path) => {
    const answer = await send(transport, "OPTIONS", path, {
      origin: other,
      "access-control-request-method": "POST",
    });
    expect(answer.status).toBe(403);
    expect(corsHeaders(answer)).toEqual([]);
    expect(answer.headers["vary"]).toBe("Origin");
  });

  it.each([
    [page, 204, "INFO"],
    [other, 403, "WARNING"],
  ])("from %s: exactly one access line, and no handler ran", async (origin, status, severity) => {
    const path = `/v1/chat/product-dev?preflight=${status}`;
    const answer = await send("http/1.1", "OPTIONS", path, {
      origin,
      "access-control-request-method": "POST",
      authorization: "Bearer not-checked",
    });
    expect(answer.status).toBe(status);
    const lines = await waitForLines((r) => JSON.stringify(r).includes(`preflight=${status}`));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      severity,
      message: `OPTIONS /v1/chat/product-dev ${status}`,
      httpRequest: { requestMethod: "OPTIONS", status },
    });
    // Routing, auth and the chat service never saw it.
    expect(lines[0]?.["rpc"]).toBeUndefined();
    expect(app.logs.records().filter((r) => r["message"] === "Authentication failed")).toEqual([]);
  });

  it("allows a subdomain of a pattern, and not its apex", async () => {
    const ok = await send("http/1.1", "OPTIONS", "/v1/chat/product-dev", {
      origin: "https://app.example.org",
      "access-control-request-method": "POST",
    });
    expect(ok.status).toBe(204);
    expect(ok.headers["access-control-allow-origin"]).toBe("https://app.example.org");
    const apex = await send("http/1.1", "OPTIONS", "/v1/chat/product-dev", {
      origin: "https://example.org",
      "access-control-request-method": "POST",
    });
    expect(apex.status).toBe(403);
  });

  it("takes an OPTIONS without Access-Control-Request-Method to the router (405, not a preflight)", async () => {
    const answer = await send("http/1.1", "OPTIONS", "/v1/chat/product-dev", { origin: page });
    expect(answer.status).toBe(405);
    expect(answer.headers["access-control-allow-origin"]).toBe(page);
  });
});

const expose = [
  ...connectCors.exposedHeaders.map((h) => h.toLowerCase()),
  "retry-after",
  "ratelimit-limit",
  "ratelimit-remaining",
  "ratelimit-reset",
  // The request id, to quote when reporting a problem.
  "x-request-id",
  // The delay the OpenAI and Anthropic SDKs prefer; whether count_tokens is an estimate.
  "retry-after-ms",
  "x-token-count",
];

describe("answers to an allowed origin", () => {
  const chat = JSON.stringify({ model: "echo-1", messages: [{ role: "user", content: "hi" }] });
  const connectChat = JSON.stringify({
    product: "product-dev",
    model: "echo-1",
    messages: [{ role: "user", text: "hi" }],
  });

  it.each([
    ["REST success", "POST", "/v1/chat/product-dev", { authorization: "Bearer TOKEN" }, chat, 200],
    ["REST 401", "POST", "/v1/chat/product-dev", { authorization: "Bearer nope" }, chat, 401],
    ["REST 404", "POST", "/v1/chat/nowhere/x/y", {}, chat, 404],
    [
      "Connect 401",
      "POST",
      "/apikeyserver.v1.ChatService/CreateChatCompletion",
      { "connect-protocol-version": "1" },
      connectChat,
      401,
    ],
    ["health", "GET", "/health", {}, undefined, 200],
  ] as const)(
    "%s carries the origin, the exposed headers and Vary",
    async (_, method, path, extra, body, status) => {
      const headers: Record<string, string> = { origin: page, "content-type": "application/json" };
      for (const [k, v] of Object.entries(extra)) headers[k] = v.replace("TOKEN", token);
      for (const transport of transports) {
        const answer = await send(transport, method, path, headers, body);
        expect(answer.status).toBe(status);
        expect(answer.headers["access-control-allow-origin"]).toBe(page);
        expect(answer.headers["access-control-expose-headers"]?.split(", ").sort()).toEqual(expose.sort());
        expect(answer.headers["vary"]).toBe("Origin");
      }
    },
  );

  it("carries the CORS headers on a gRPC-Web error", async () => {
    const message = toBinary(
      ChatCompletionRequestSchema,
      create(ChatCompletionRequestSchema, { product: "product-dev", model: "echo-1" }),
    );
    const frame = Buffer.alloc(5 + message.length);
    frame.writeUInt32BE(message.length, 1);
    frame.set(message, 5);
    const res = await request(`${app.url}/apikeyserver.v1.ChatService/CreateChatCompletion`, {
      method: "POST",
      headers: { origin: page, "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
      body: frame,
    });
    const body = Buffer.from(await res.body.arrayBuffer()).toString("latin1");
    // In the headers when trailers-only, else in the trailer frame at the end of the body.
    expect(res.headers["grpc-status"] ?? /grpc-status: (\d+)/.exec(body)?.[1]).toBe("16");
    expect(res.headers["access-control-allow-origin"]).toBe(page);
    expect(res.headers["access-control-expose-headers"]).toContain("grpc-status");
  });

  it("lets a 429's Retry-After be read", async () => {
    const headers = { origin: page, authorization: `Bearer ${token}`, "content-type": "application/json" };
    expect((await send("http/1.1", "POST", "/v1/chat/product-limited", headers, chat)).status).toBe(200);
    const refused = await send("http/1.1", "POST", "/v1/chat/product-limited", headers, chat);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    expect(refused.headers["access-control-expose-headers"]).toContain("retry-after");
  });
});

describe("answers to other origins", () => {
  it("run (the browser hides them) but carry no CORS header", async () => {
    const answer = await send("http/1.1", "GET", "/health", { origin: other });
    expect(answer.status).toBe(200);
    expect(corsHeaders(answer)).toEqual([]);
    expect(answer.headers["vary"]).toBe("Origin");
  });
});

describe("with no origin configured (the default)", () => {
  it("refuses every preflight and adds no CORS header or Vary to answers", async () => {
    const closed = await startApp();
    try {
      const url = `${closed.url}/v1/chat/product-dev`;
      const preflight = await request(url, {
        method: "OPTIONS",
        headers: { origin: page, "access-control-request-method": "POST" },
      });
      await preflight.body.dump();
      expect(preflight.statusCode).toBe(403);
      const health = await request(`${closed.url}/health`, { headers: { origin: page } });
      await health.body.dump();
      expect(
        Object.keys(health.headers).filter((k) => k.startsWith("access-control-") || k === "vary"),
      ).toEqual([]);
    } finally {
      await closed.close();
    }
  });
});
