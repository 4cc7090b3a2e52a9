import { create, fromBinary, toBinary, type MessageShape } from "@bufbuild/protobuf";
import { AnySchema, anyUnpack } from "@bufbuild/protobuf/wkt";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  ChatCompletionChunkSchema,
  ChatCompletionRequestSchema,
  ChatCompletionSchema,
  ChatService,
} from "../../gen/apikeyserver/v1/chat_pb.js";
import { RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { randomUUID } from "node:crypto";
import { signRequest } from "../../src/auth/index.js";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { transportOf } from "../support/transports.js";
import { grpcMethod } from "../support/auth-server.js";
import {
  behaviors,
  defaultCompletion,
  startMockProvider,
  type MockProvider,
} from "../support/mock-provider.js";
import { canaryKey } from "../upstream/helpers.js";

/**
 * Issue 7 at the server level: the composed app (auth → chat service → limiter) on a real port, called over
 * REST, Connect and gRPC. Limits are per product and caller; a refusal is 429 / RESOURCE_EXHAUSTED
 * `Rate limit exceeded` with the retry delay (Retry-After, google.rpc.RetryInfo) and the RateLimit-* fields.
 */

const requestsPerMinute = 3;
const echoOnly = { echo: { models: ["echo-1"] } };
/** 40 characters: echo reports 3 + 4 + 10 prompt tokens and 10 completion tokens = 27 (checked below). */
const tokenMessage = "x".repeat(40);
const tokensPerRequest = 27;
/** Two requests fit (54), the third is admitted with 6 left and goes into debt (81), the fourth is refused. */
const tokensPerMinute = 60;
/** One HMAC key per protocol row (so the rows do not share a budget), plus an unrelated one. */
const hmacKeyOf = (protocolName: string) => ({
  keyId: `svc-${protocolName}`,
  secret: `secret-${protocolName}-0123456789abcdef0123456789`,
});
const hmacOther = { keyId: "svc-other", secret: "secret-other-0123456789abcdef0123456789" };

let app: AppHarness;
let mock: MockProvider;

beforeAll(async () => {
  mock = await startMockProvider();
  const limited = { requests_per_minute: requestsPerMinute };
  app = await startApp({
    products: {
      "product-dev": { providers: echoOnly, rate_limit: limited },
      "product-other": { providers: echoOnly, rate_limit: limited },
      "product-tokens": {
        providers: echoOnly,
        rate_limit: { requests_per_minute: 100, tokens_per_minute: tokensPerMinute },
      },
      "product-upstream": {
        providers: {
          openai: { api_key: canaryKey, base_url: `${mock.url}/v1`, models: ["gpt-4o-mini"] },
        },
      },
    },
    hmac: Object.fromEntries(
      [...protocolFactories.map(([name]) => hmacKeyOf(name)), hmacOther].map((key) => [
        key.keyId,
        { secret: key.secret, products: ["product-dev"] },
      ]),
    ),
  });
});

afterAll(async () => {
  for (const client of clients) client.close();
  await app?.close();
  await mock?.close();
});

beforeEach(() => {
  mock.setBehavior(behaviors.json(200, defaultCompletion));
});

/** What the caller saw, the same way on every protocol. */
interface Answer {
  /** The HTTP status (REST only). */
  readonly status?: number;
  readonly code: Code | 0;
  readonly message: string;
  /** Retry delay in ms: google.rpc.RetryInfo (Connect, gRPC) or Retry-After (REST). */
  readonly retryDelayMs?: number;
  /** Response headers (REST), error metadata (Connect) or trailers (gRPC). */
  readonly headers: Headers;
  /** usage.total_tokens of a successful unary answer. */
  readonly totalTokens?: number;
  /** The REST error body, parsed. */
  readonly body?: unknown;
}

interface Call {
  readonly product: string;
  readonly model?: string;
  readonly content?: string;
  /** Caller credentials as headers (Authorization: Bearer, or the HMAC headers). */
  readonly auth: (target: {
    method: string;
    path: string;
    body: Uint8Array | string;
  }) => Record<string, string>;
  readonly stream?: boolean;
}

interface Protocol {
  readonly name: string;
  call(call: Call): Promise<Answer>;
  close(): void;
}

const clients: Protocol[] = [];

function chatRequest(call: Call): MessageShape<typeof ChatCompletionRequestSchema> {
  return create(ChatCompletionRequestSchema, {
    product: call.product,
    model: call.model ?? "echo-1",
    messages: [{ role: "user", content: { case: "text", value: call.content ?? "Hello" } }],
  });
}

function retryDelayOf(details: readonly MessageShape<typeof AnySchema>[]): number | undefined {
  for (const any of details) {
    const info = anyUnpack(any, RetryInfoSchema);
    const delay = info?.retryDelay;
    if (delay !== undefined) return Number(delay.seconds) * 1000 + delay.nanos / 1e6;
  }
  return undefined;
}

/** POST /v1/chat/{product} (or `:stream`) with fetch. */
function restProtocol(): Protocol {
  return {
    name: "rest",
    async call(call) {
      const path = `/v1/chat/${call.product}${call.stream === true ? ":stream" : ""}`;
      const body = JSON.stringify({
        model: call.model ?? "echo-1",
        messages: [{ role: "user", content: call.content ?? "Hello" }],
      });
      const res = await fetch(`${app.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...call.auth({ method: "POST", path, body }) },
        body,
      });
      const text = await res.text();
      if (res.ok) {
        const json =
          call.stream === true ? undefined : (JSON.parse(text) as { usage?: { total_tokens?: number } });
        return {
          status: res.status,
          code: 0,
          message: "",
          headers: res.headers,
          ...(json?.usage?.total_tokens !== undefined ? { totalTokens: json.usage.total_tokens } : {}),
        };
      }
      const parsed = JSON.parse(text) as { error: { message: string } };
      const retryAfter = res.headers.get("retry-after");
      return {
        status: res.status,
        code: Code.ResourceExhausted,
        message: parsed.error.message,
        headers: res.headers,
        body: parsed,
        ...(retryAfter !== null ? { retryDelayMs: Number(retryAfter) * 1000 } : {}),
      };
    },
    close() {},
  };
}

/** The Connect-ES client (Connect protocol, HTTP/1.1, binary). */
function connectProtocol(): Protocol {
  const chat = createClient(ChatService, transportOf("Connect binary, HTTP/1.1", app.url));
  return {
    name: "connect",
    async call(call) {
      const request = chatRequest(call);
      const [service, method] = [
        "apikeyserver.v1.ChatService",
        call.stream === true ? "StreamChatCompletion" : "CreateChatCompletion",
      ];
      const headers = call.auth({
        method: "POST",
        path: `/${service}/${method}`,
        body: toBinary(ChatCompletionRequestSchema, request),
      });
      try {
        if (call.stream === true) {
          for await (const _chunk of chat.streamChatCompletion(request, { headers })) {
            // drained
          }
          return { code: 0, message: "", headers: new Headers() };
        }
        const res = await chat.createChatCompletion(request, { headers });
        return {
          code: 0,
          message: "",
          headers: new Headers(),
          ...(res.usage ? { totalTokens: res.usage.totalTokens } : {}),
        };
      } catch (err) {
        const e = ConnectError.from(err);
        const info = e.findDetails(RetryInfoSchema)[0]?.retryDelay;
        return {
          code: e.code,
          message: e.rawMessage,
          headers: e.metadata,
          ...(info !== undefined ? { retryDelayMs: Number(info.seconds) * 1000 + info.nanos / 1e6 } : {}),
        };
      }
    },
    close() {},
  };
}

/** google.rpc.Status from `grpc-status-details-bin`: only its `details` (field 3, repeated Any) matter here. */
function statusDetails(bytes: Uint8Array): MessageShape<typeof AnySchema>[] {
  const details: MessageShape<typeof AnySchema>[] = [];
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 3) details.push(fromBinary(AnySchema, reader.bytes()));
    else reader.skip(wireType);
  }
  return details;
}

/** @grpc/grpc-js over h2c to the one port. */
function grpcProtocol(): Protocol {
  const Client = grpc.makeGenericClientConstructor(
    {
      CreateChatCompletion: grpcMethod(
        "/apikeyserver.v1.ChatService/CreateChatCompletion",
        ChatCompletionRequestSchema,
        ChatCompletionSchema,
        false,
      ),
      StreamChatCompletion: grpcMethod(
        "/apikeyserver.v1.ChatService/StreamChatCompletion",
        ChatCompletionRequestSchema,
        ChatCompletionChunkSchema,
        true,
      ),
    },
    "ChatService",
  );
  const client = new Client(`127.0.0.1:${app.port}`, grpc.credentials.createInsecure());
  type Unary = (
    req: unknown,
    md: grpc.Metadata,
    cb: (err: grpc.ServiceError | null, res?: MessageShape<typeof ChatCompletionSchema>) => void,
  ) => void;
  type Streaming = (req: unknown, md: grpc.Metadata) => grpc.ClientReadableStream<unknown>;
  const methods = client as unknown as { CreateChatCompletion: Unary; StreamChatCompletion: Streaming };
  const failed = (err: grpc.ServiceError): Answer => {
    const headers = new Headers();
    for (const [name, value] of Object.entries(err.metadata.getMap())) {
      if (typeof value === "string") headers.set(name, value);
    }
    const bin = err.metadata.get("grpc-status-details-bin")[0];
    const delay = bin instanceof Buffer ? retryDelayOf(statusDetails(bin)) : undefined;
    return {
      code: err.code as number,
      message: err.details,
      headers,
      ...(delay !== undefined ? { retryDelayMs: delay } : {}),
    };
  };
  return {
    name: "grpc",
    call(call) {
      const request = chatRequest(call);
      const method = call.stream === true ? "StreamChatCompletion" : "CreateChatCompletion";
      const md = new grpc.Metadata();
      const auth = call.auth({
        method: "POST",
        path: `/apikeyserver.v1.ChatService/${method}`,
        body: toBinary(ChatCompletionRequestSchema, request),
      });
      for (const [name, value] of Object.entries(auth)) md.set(name, value);
      return new Promise((resolve) => {
        if (call.stream === true) {
          const stream = methods.StreamChatCompletion.call(client, request, md);
          stream.on("data", () => undefined);
          stream.on("error", (err: grpc.ServiceError) => resolve(failed(err)));
          stream.on("end", () => resolve({ code: 0, message: "", headers: new Headers() }));
          return;
        }
        methods.CreateChatCompletion.call(client, request, md, (err, res) => {
          if (err) return resolve(failed(err));
          resolve({
            code: 0,
            message: "",
            headers: new Headers(),
            ...(res?.usage ? { totalTokens: res.usage.totalTokens } : {}),
          });
        });
      });
    },
    close() {
      client.close();
    },
  };
}

const protocolFactories = [
  ["rest", restProtocol],
  ["connect", connectProtocol],
  ["grpc", grpcProtocol],
] as const;

function protocol(name: (typeof protocolFactories)[number][0]): Protocol {
  let client = clients.find((c) => c.name === name);
  if (client === undefined) {
    const make = protocolFactories.find(([n]) => n === name)?.[1];
    if (make === undefined) throw new Error(`no protocol ${name}`);
    client = make();
    clients.push(client);
  }
  return client;
}

const allProducts = ["product-dev", "product-other", "product-tokens", "product-upstream"];

/** A JWT caller: `Authorization: Bearer` for the given sub, allowed every product. */
async function jwtCaller(sub: string): Promise<Call["auth"]> {
  const token = await app.token({ claims: { sub, products: allProducts } });
  return () => ({ authorization: `Bearer ${token}` });
}

/** An HMAC caller: each request signed for exactly what is sent (method, path, body). */
function hmacCaller(key: { keyId: string; secret: string }): Call["auth"] {
  return (target) => signRequest({ ...key, ...target, nonce: randomUUID() });
}

const ok = { code: 0, message: "" } as const;

/** The refusal of our own limiter: code, message, retry delay and RateLimit-* fields (protocol-specific). */
function expectRefused(
  protocolName: string,
  answer: Answer,
  limit: number,
  maxRetrySeconds: number,
  maxResetSeconds = 60,
): void {
  expect({ code: answer.code, message: answer.message }).toEqual({
    code: Code.ResourceExhausted,
    message: "Rate limit exceeded",
  });
  expect(answer.retryDelayMs).toBeGreaterThan(0);
  expect(answer.retryDelayMs).toBeLessThanOrEqual(maxRetrySeconds * 1000);
  expect(answer.headers.get("ratelimit-limit")).toBe(String(limit));
  expect(answer.headers.get("ratelimit-remaining")).toBe("0");
  const reset = Number(answer.headers.get("ratelimit-reset"));
  expect(reset).toBeGreaterThanOrEqual(1);
  expect(reset).toBeLessThanOrEqual(maxResetSeconds);
  if (protocolName === "rest") {
    expect(answer.status).toBe(429);
    expect(answer.body).toEqual({
      error: { code: 429, status: "RESOURCE_EXHAUSTED", message: "Rate limit exceeded" },
      detail: "Rate limit exceeded",
    });
    const retryAfter = answer.headers.get("retry-after");
    expect(retryAfter).toMatch(/^\d+$/);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
  }
}

describe.each(protocolFactories.map(([name]) => name))("requests per minute over %s", (name) => {
  it(`admits exactly ${requestsPerMinute} requests, then refuses with the retry delay; others unaffected`, async () => {
    const client = protocol(name);
    const caller = await jwtCaller(`edge-${name}`);
    for (let i = 0; i < requestsPerMinute; i++) {
      expect(await client.call({ product: "product-dev", auth: caller }), `request ${i + 1}`).toMatchObject(
        ok,
      );
    }
    // 3 per minute = one every 20 s: the wait is at most 20 s.
    const refused = await client.call({ product: "product-dev", auth: caller });
    expectRefused(name, refused, requestsPerMinute, 20);
    // The streaming RPC shares the same limit, and a refused request charges nothing: the wait does not
    // grow by another 20 s.
    const again = await client.call({ product: "product-dev", auth: caller, stream: true });
    expectRefused(name, again, requestsPerMinute, 20);
    expect(again.retryDelayMs).toBeLessThanOrEqual(refused.retryDelayMs ?? 0);

    // The same caller on another product, and another caller on the same product, still have their budget.
    expect(await client.call({ product: "product-other", auth: caller })).toMatchObject(ok);
    expect(
      await client.call({ product: "product-dev", auth: await jwtCaller(`other-${name}`) }),
    ).toMatchObject(ok);
    expectRefused(name, await client.call({ product: "product-dev", auth: caller }), requestsPerMinute, 20);
  });
});

describe("HMAC callers are limited by key id", () => {
  it.each(protocolFactories.map(([name]) => name))("over %s", async (name) => {
    const client = protocol(name);
    const key = hmacKeyOf(name);
    for (let i = 0; i < requestsPerMinute; i++) {
      expect(await client.call({ product: "product-dev", auth: hmacCaller(key) })).toMatchObject(ok);
    }
    expectRefused(
      name,
      await client.call({ product: "product-dev", auth: hmacCaller(key) }),
      requestsPerMinute,
      20,
    );
    // Another key, and a JWT caller whose sub equals the key id, are other callers.
    expect(await client.call({ product: "product-dev", auth: hmacCaller(hmacOther) })).toMatchObject(ok);
    expect(await client.call({ product: "product-dev", auth: await jwtCaller(key.keyId) })).toMatchObject(ok);
  });
});

describe("tokens per minute, charged from the usage the provider reports", () => {
  it.each(protocolFactories.map(([name]) => name))(
    "over %s: admits while budget is left, then refuses until the debt is paid",
    async (name) => {
      const client = protocol(name);
      const caller = await jwtCaller(`tokens-${name}`);
      const call = { product: "product-tokens", content: tokenMessage, auth: caller };
      for (let i = 0; i < 3; i++) {
        // 0 → 27 → 54 (6 left) → 81: the third is admitted with budget left, then goes into debt.
        expect(await client.call(call), `request ${i + 1}`).toMatchObject({
          ...ok,
          totalTokens: tokensPerRequest,
        });
      }
      // 21 tokens of debt plus one = 22 s at one token per second; full again after 81 s.
      expectRefused(name, await client.call(call), tokensPerMinute, 22, 81);
      // Another caller of the same product has its own budget.
      expect(await client.call({ ...call, auth: await jwtCaller(`tokens-other-${name}`) })).toMatchObject({
        ...ok,
        totalTokens: tokensPerRequest,
      });
    },
  );
});

describe("a provider's own 429", () => {
  it.each(protocolFactories.map(([name]) => name))(
    "over %s: the same answer as ours, with the provider's retry delay (retry-after: 7)",
    async (name) => {
      mock.setBehavior(
        behaviors.json(
          429,
          {
            error: {
              message: `Rate limit reached for gpt-4o-mini on key ${canaryKey}`,
              type: "requests",
              param: null,
              code: "rate_limit_exceeded",
            },
          },
          { "retry-after": "7" },
        ),
      );
      const before = mock.requests.length;
      const answer = await protocol(name).call({
        product: "product-upstream",
        model: "gpt-4o-mini",
        auth: await jwtCaller(`upstream-${name}`),
      });
      expect(mock.requests.length).toBe(before + 1);
      expect({ code: answer.code, message: answer.message, retryDelayMs: answer.retryDelayMs }).toEqual({
        code: Code.ResourceExhausted,
        message: "Rate limit exceeded",
        retryDelayMs: 7000,
      });
      if (name === "rest") {
        expect(answer.status).toBe(429);
        expect(answer.headers.get("retry-after")).toBe("7");
        expect(answer.body).toEqual({
          error: { code: 429, status: "RESOURCE_EXHAUSTED", message: "Rate limit exceeded" },
          detail: "Rate limit exceeded",
        });
      }
      for (const [header, value] of answer.headers)
        expect(`${header}: ${value}`).not.toContain(canaryKey.slice(-8));
      expect(app.logs.text()).not.toContain(canaryKey.slice(-8));
    },
  );
});

describe("defaults from the environment for products without their own rate_limit", () => {
  let defaults: AppHarness;
  beforeAll(async () => {
    defaults = await startApp({
      products: {
        "product-default": { providers: echoOnly },
        "product-own": { providers: echoOnly, rate_limit: { requests_per_minute: 4 } },
      },
      env: { API_KEY_SERVER_RATE_LIMIT_REQUESTS_PER_MINUTE: "2" },
    });
  });
  afterAll(() => defaults?.close());

  /** Sends `count` REST requests as `sub` and returns the statuses and the last answer's headers. */
  async function send(product: string, sub: string, count: number) {
    const token = await defaults.token({ claims: { sub, products: ["product-default", "product-own"] } });
    const statuses: number[] = [];
    let last: Headers = new Headers();
    for (let i = 0; i < count; i++) {
      const res = await fetch(`${defaults.url}/v1/chat/${product}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify({ model: "echo-1", messages: [{ role: "user", content: "Hello" }] }),
      });
      await res.text();
      statuses.push(res.status);
      last = res.headers;
    }
    return { statuses, last };
  }

  it.each([
    ["product-default", "API_KEY_SERVER_RATE_LIMIT_REQUESTS_PER_MINUTE", 2],
    ["product-own", "its own rate_limit over the default", 4],
  ] as const)("%s is limited by %s (%i per minute)", async (product, _source, limit) => {
    const { statuses, last } = await send(product, `defaults-${product}`, limit + 2);
    expect(statuses).toEqual([...Array<number>(limit).fill(200), 429, 429]);
    expect(last.get("ratelimit-limit")).toBe(String(limit));
  });
});
