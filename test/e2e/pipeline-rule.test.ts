import { gzipSync } from "node:zlib";
import { createClient, ConnectError, type Interceptor } from "@connectrpc/connect";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatService } from "../../gen/apikeyserver/v1/chat_pb.js";
import { exchangeKey } from "../../src/edge/index.js";
import { AppError } from "../../src/errors/index.js";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { transportCases } from "../support/transports.js";

// A per-call rule is written once, in the call pipeline, and reaches every protocol and API surface with
// no per-protocol code (docs/architecture.md, "The call pipeline"). This test registers one test-only rule
// through the composition root (AppOptions.interceptors, as a deployment would add one) and calls every
// protocol and route, both lanes included: the rule must see each call once, with the right RPC and
// protocol, and a refusal it makes must reach the caller in each protocol's own form.

interface Seen {
  readonly rpc: string;
  readonly protocol: string | undefined;
}

const seen: Seen[] = [];
const rule: Interceptor = (next) => (req) => {
  seen.push({
    rpc: `${req.service.typeName}/${req.method.name}`,
    protocol: req.contextValues.get(exchangeKey)?.protocol,
  });
  if (req.header.get("x-test-refuse") === "1") throw new AppError("forbidden");
  return next(req);
};

const create = "apikeyserver.v1.ChatService/CreateChatCompletion";
const stream = "apikeyserver.v1.ChatService/StreamChatCompletion";
const list = "apikeyserver.v1.ChatService/ListModels";
const body = { model: "echo-1", messages: [{ role: "user", content: "Hello" }] };

let app: AppHarness;
let token = "";

beforeAll(async () => {
  app = await startApp({ interceptors: [rule] });
  token = await app.token();
});

afterAll(async () => {
  await app.close();
});

/** One call of a route: resolves with the status it ended in ("ok", or the error's HTTP/Connect form). */
type Route = (refuse: boolean) => Promise<string>;

function headers(refuse: boolean): Record<string, string> {
  return {
    authorization: `Bearer ${token}`,
    "content-type": "application/json",
    ...(refuse ? { "x-test-refuse": "1" } : {}),
  };
}

async function http(path: string, refuse: boolean, init: RequestInit = {}): Promise<string> {
  const res = await fetch(`${app.url}${path}`, { headers: headers(refuse), ...init });
  const text = await res.text();
  if (res.status !== 200) return `${res.status}`;
  // A stream that failed after its headers ends with an error event: not a success.
  return text.includes("event: error") ? "stream error" : "ok";
}

function openai(refuse: boolean): OpenAI {
  return new OpenAI({
    apiKey: token,
    baseURL: `${app.url}/openai/product-dev/v1`,
    maxRetries: 0,
    defaultHeaders: refuse ? { "x-test-refuse": "1" } : {},
  });
}

async function outcome(call: () => Promise<unknown>): Promise<string> {
  try {
    await call();
    return "ok";
  } catch (err) {
    if (err instanceof ConnectError) return `code ${err.code}`;
    if (err instanceof OpenAI.APIError) return `${err.status}`;
    throw err;
  }
}

const rpcRoutes: [string, string, string, Route][] = transportCases.flatMap((c) => {
  const client = () => createClient(ChatService, c.transport(app.url));
  const callOptions = (refuse: boolean) => ({ headers: headers(refuse) });
  const unary: Route = (refuse) =>
    outcome(() =>
      client().createChatCompletion({ product: "product-dev", ...body } as never, callOptions(refuse)),
    );
  const streamed: Route = (refuse) =>
    outcome(async () => {
      const chunks = client().streamChatCompletion(
        { product: "product-dev", ...body } as never,
        callOptions(refuse),
      );
      for await (const _chunk of chunks) {
        // read to the end
      }
    });
  return [
    [`${c.name}: CreateChatCompletion`, create, c.protocol, unary],
    [`${c.name}: StreamChatCompletion`, stream, c.protocol, streamed],
  ] as [string, string, string, Route][];
});

const routes: [string, string, string, Route][] = [
  ...rpcRoutes,
  [
    "REST POST /v1/chat/{product}",
    create,
    "rest",
    (refuse) => http("/v1/chat/product-dev", refuse, { method: "POST", body: JSON.stringify(body) }),
  ],
  [
    "REST POST /v1/chat/{product}:stream",
    stream,
    "rest",
    (refuse) => http("/v1/chat/product-dev:stream", refuse, { method: "POST", body: JSON.stringify(body) }),
  ],
  [
    "REST GET /v1/chat/{product}/models",
    list,
    "rest",
    (refuse) => http("/v1/chat/product-dev/models", refuse),
  ],
  [
    "OpenAI chat/completions",
    create,
    "openai",
    (refuse) => outcome(() => openai(refuse).chat.completions.create(body as never)),
  ],
  [
    "OpenAI chat/completions, stream: true",
    stream,
    "openai",
    (refuse) =>
      outcome(async () => {
        const chunks = await openai(refuse).chat.completions.create({ ...body, stream: true } as never);
        for await (const _chunk of chunks as unknown as AsyncIterable<unknown>) {
          // read to the end
        }
      }),
  ],
  ["OpenAI models", list, "openai", (refuse) => outcome(() => openai(refuse).models.list())],
  [
    "OpenAI models/{model}",
    list,
    "openai",
    (refuse) => outcome(() => openai(refuse).models.retrieve("echo-1")),
  ],
  [
    // The fallback lane (connect-node's handlers): a compressed Connect unary body.
    "Connect JSON, gzip request body (fallback lane)",
    create,
    "connect",
    (refuse) =>
      http(`/${create}`, refuse, {
        method: "POST",
        headers: { ...headers(refuse), "content-encoding": "gzip" },
        // Connect JSON is protobuf's JSON: the content oneof by its member's name.
        body: gzipSync(
          JSON.stringify({
            product: "product-dev",
            model: "echo-1",
            messages: [{ role: "user", text: "Hello" }],
          }),
        ),
      }),
  ],
];

describe("a per-call rule registered once runs on every protocol and route", () => {
  it.each(routes)("%s", async (_name, rpc, protocol, call) => {
    seen.length = 0;
    expect(await call(false)).toBe("ok");
    expect(seen).toStrictEqual([{ rpc, protocol }]);
  });

  it.each(routes)("%s: the rule's refusal reaches the caller", async (_name, rpc, protocol, call) => {
    seen.length = 0;
    // 403 (PERMISSION_DENIED, code 7) in each protocol's form.
    expect(["403", "code 7"]).toContain(await call(true));
    expect(seen).toStrictEqual([{ rpc, protocol }]);
  });
});
