import { gzipSync } from "node:zlib";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatService } from "../../gen/apikeyserver/v1/chat_pb.js";
import { UsageService } from "../../gen/apikeyserver/v1/usage_pb.js";
import { estimatePromptTokens } from "../../src/usage/estimate.js";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { transportCase, transportCases } from "../support/transports.js";

// Budgets are enforced in the one call pipeline (src/chat/chat-core.ts → src/limits/call-gate.ts), not in
// a surface: every protocol and route that spends provider tokens is charged the same for the same call,
// and refused the same once its budget is spent. Each route runs as a caller of its own (a JWT `sub` per
// row) against a caller budget that fits exactly one call's worst case.

const maxTokens = 16;
const messages = [{ role: "user", content: "Tell me everything about budgets. ".repeat(8) }];
// The worst case the gate reserves: the prompt estimate plus the output cap.
const worstCase = estimatePromptTokens({ messages }) + maxTokens;
const products = {
  "product-dev": {
    providers: { echo: { models: ["echo-1"] } },
    prices: { "echo-1": { input: 1, output: 2 } },
    budgets: { caller: { daily_tokens: worstCase } },
  },
};

let app: AppHarness;

beforeAll(async () => {
  app = await startApp({ products, metrics: true });
});

afterAll(async () => {
  await app.close();
});

const tokenOf = (sub: string) => app.token({ claims: { sub } });

/** One call of a route as caller `sub`: "ok", or how it was refused. */
type Route = (sub: string) => Promise<string>;

const openaiBody = { model: "echo-1", messages, max_tokens: maxTokens };
const protoBody = {
  product: "product-dev",
  model: "echo-1",
  messages: messages.map((m) => ({ role: m.role, content: { case: "text", value: m.content } })),
  maxTokens,
};

async function http(sub: string, path: string, init: RequestInit & { headers?: Record<string, string> }) {
  const res = await fetch(`${app.url}${path}`, {
    ...init,
    headers: {
      authorization: `Bearer ${await tokenOf(sub)}`,
      "content-type": "application/json",
      ...init.headers,
    },
  });
  const text = await res.text();
  if (res.status === 200) return text.includes("event: error") ? "stream error" : "ok";
  // REST and OpenAI: {"error": {"message"}}; Connect unary: {"code", "message"}.
  const body = JSON.parse(text) as { error?: { message: string }; message?: string };
  const message = body.error?.message ?? body.message;
  return `${res.status} ${message} retry-after=${res.headers.get("retry-after") !== null}`;
}

async function outcome(call: () => Promise<unknown>): Promise<string> {
  try {
    await call();
    return "ok";
  } catch (err) {
    if (err instanceof ConnectError) return `code ${Code[err.code]} ${err.rawMessage}`;
    if (err instanceof OpenAI.APIError) {
      const headers = err.headers as Headers | undefined;
      const message = (err.error as { message: string }).message;
      return `${err.status} ${message} retry-after=${headers?.get("retry-after") != null}`;
    }
    throw err;
  }
}

async function openai(sub: string): Promise<OpenAI> {
  return new OpenAI({
    apiKey: await tokenOf(sub),
    baseURL: `${app.url}/openai/product-dev/v1`,
    maxRetries: 0,
  });
}

const rpcRoutes: [string, Route][] = transportCases.flatMap((c): [string, Route][] => {
  const client = () => createClient(ChatService, c.transport(app.url));
  const headers = async (sub: string) => ({ headers: { authorization: `Bearer ${await tokenOf(sub)}` } });
  return [
    [
      `${c.name}: CreateChatCompletion`,
      async (sub) =>
        outcome(async () => client().createChatCompletion(protoBody as never, await headers(sub))),
    ],
    [
      `${c.name}: StreamChatCompletion`,
      async (sub) =>
        outcome(async () => {
          const chunks = client().streamChatCompletion(
            { ...protoBody, streamOptions: { includeUsage: true } } as never,
            await headers(sub),
          );
          for await (const _chunk of chunks) {
            // read to the end
          }
        }),
    ],
  ];
});

const routes: [string, Route][] = [
  ...rpcRoutes,
  [
    "REST POST /v1/chat/{product}",
    (sub) => http(sub, "/v1/chat/product-dev", { method: "POST", body: JSON.stringify(openaiBody) }),
  ],
  [
    "REST POST /v1/chat/{product}:stream",
    (sub) =>
      http(sub, "/v1/chat/product-dev:stream", {
        method: "POST",
        body: JSON.stringify({ ...openaiBody, stream_options: { include_usage: true } }),
      }),
  ],
  [
    "OpenAI chat/completions",
    async (sub) => outcome(async () => (await openai(sub)).chat.completions.create(openaiBody as never)),
  ],
  [
    "OpenAI chat/completions, stream: true",
    async (sub) =>
      outcome(async () => {
        const chunks = await (
          await openai(sub)
        ).chat.completions.create({
          ...openaiBody,
          stream: true,
          stream_options: { include_usage: true },
        } as never);
        for await (const _chunk of chunks as unknown as AsyncIterable<unknown>) {
          // read to the end
        }
      }),
  ],
  [
    "OpenAI responses",
    (sub) =>
      http(sub, "/openai/product-dev/v1/responses", {
        method: "POST",
        body: JSON.stringify({ model: "echo-1", input: messages, max_output_tokens: maxTokens }),
      }),
  ],
  [
    "OpenAI responses, stream: true",
    (sub) =>
      http(sub, "/openai/product-dev/v1/responses", {
        method: "POST",
        body: JSON.stringify({
          model: "echo-1",
          input: messages,
          max_output_tokens: maxTokens,
          stream: true,
        }),
      }),
  ],
  [
    "Anthropic messages",
    (sub) =>
      http(sub, "/anthropic/product-dev/v1/messages", {
        method: "POST",
        headers: { "anthropic-version": "2023-06-01" },
        body: JSON.stringify({ model: "echo-1", messages, max_tokens: maxTokens }),
      }),
  ],
  [
    "Anthropic messages, stream: true",
    (sub) =>
      http(sub, "/anthropic/product-dev/v1/messages", {
        method: "POST",
        headers: { "anthropic-version": "2023-06-01" },
        body: JSON.stringify({ model: "echo-1", messages, max_tokens: maxTokens, stream: true }),
      }),
  ],
  [
    "Connect JSON, gzip request body (fallback lane)",
    (sub) =>
      http(sub, "/apikeyserver.v1.ChatService/CreateChatCompletion", {
        method: "POST",
        headers: { "content-encoding": "gzip" },
        body: gzipSync(
          JSON.stringify({
            product: "product-dev",
            model: "echo-1",
            maxTokens,
            messages: messages.map((m) => ({ role: m.role, text: m.content })),
          }),
        ),
      }),
  ],
];

interface Charge {
  readonly totalTokens: unknown;
  readonly costUsd: unknown;
  readonly usedTokens: number;
  readonly usedUsd: number;
}

/** What a caller was charged: its access line's usage and cost, and what GetUsage reports. */
async function chargeOf(sub: string): Promise<Charge> {
  // The access line is written once the answer has ended, a moment after the client has it.
  let line: Record<string, unknown> | undefined;
  for (let i = 0; i < 200 && line === undefined; i++) {
    line = app.logs.records().find((r) => r["caller"] === `jwt:${sub}` && r["totalTokens"] !== undefined);
    if (line === undefined) await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const res = await fetch(`${app.url}/v1/usage/product-dev`, {
    headers: { authorization: `Bearer ${await tokenOf(sub)}` },
  });
  expect(res.status).toBe(200);
  // REST JSON: the proto field names, int64 as a JSON number.
  const usage = (await res.json()) as { windows: { used_tokens: number; used_usd: number }[] };
  const window = usage.windows[0];
  if (!window) throw new Error("no budget window");
  return {
    totalTokens: line?.["totalTokens"],
    costUsd: line?.["costUsd"],
    usedTokens: window.used_tokens,
    usedUsd: window.used_usd,
  };
}

describe("one enforcement point: every protocol and route is charged and refused the same", () => {
  const charges = new Map<string, Charge>();

  it.each(routes.map(([name, call], i) => [name, call, `route-${i}`] as const))(
    "%s",
    async (_name, call, sub) => {
      expect(await call(sub)).toBe("ok");
      const charge = await chargeOf(sub);
      charges.set(sub, charge);
      // GetUsage shows exactly what the access line says the call used and cost.
      expect(charge.usedTokens).toBe(charge.totalTokens);
      expect(charge.usedUsd).toBeCloseTo(charge.costUsd as number, 12);
      // The same call costs the same on every route.
      expect(charge).toStrictEqual(charges.get("route-0"));
      // Its budget fitted one worst case: the second call is refused, in the protocol's own form.
      expect(["429 Budget exceeded retry-after=true", "code ResourceExhausted Budget exceeded"]).toContain(
        await call(sub),
      );
      // A refused call charges nothing.
      expect(await chargeOf(sub)).toStrictEqual(charge);
    },
  );

  it.each([
    ["OpenAI embeddings", "/openai/product-dev/v1/embeddings", "embed-openai"],
    ["REST POST /v1/embeddings/{product}", "/v1/embeddings/product-dev", "embed-rest"],
  ])(
    "%s: charged through the same gate, and refused the same once the budget is spent",
    async (_n, path, sub) => {
      const body = JSON.stringify({ model: "echo-1", input: messages[0]?.content });
      const outcomes: string[] = [];
      for (let i = 0; i < 100 && !outcomes.includes("429 Budget exceeded retry-after=true"); i++) {
        outcomes.push(await http(sub, path, { method: "POST", body }));
      }
      // Some calls fit, then the budget refuses, in the surface's error shape with Retry-After.
      expect(outcomes.at(-1)).toBe("429 Budget exceeded retry-after=true");
      expect(outcomes.slice(0, -1).every((o) => o === "ok")).toBe(true);
      expect(outcomes.length).toBeGreaterThan(1);
      // GetUsage shows the sum of what the access lines say the calls used.
      await new Promise((resolve) => setTimeout(resolve, 50));
      const lines = app.logs
        .records()
        .filter((r) => r["caller"] === `jwt:${sub}` && r["totalTokens"] !== undefined);
      expect(lines).toHaveLength(outcomes.length - 1);
      const res = await fetch(`${app.url}/v1/usage/product-dev`, {
        headers: { authorization: `Bearer ${await tokenOf(sub)}` },
      });
      const usage = (await res.json()) as { windows: { used_tokens: number }[] };
      expect(usage.windows[0]?.used_tokens).toBe(
        lines.reduce((sum, r) => sum + (r["totalTokens"] as number), 0),
      );
    },
  );

  it("the first row's charge is the provider's usage, priced", () => {
    const charge = charges.get("route-0");
    expect(charge?.totalTokens).toBeGreaterThan(maxTokens);
    expect(charge?.costUsd).toBeGreaterThan(0);
  });

  it("GetUsage over Connect names the caller, the window, the limit, what remains and the reset", async () => {
    const client = createClient(UsageService, transportCase("Connect binary, HTTP/2").transport(app.url));
    const answer = await client.getUsage(
      { product: "product-dev" },
      { headers: { authorization: `Bearer ${await tokenOf("route-0")}` } },
    );
    const used = charges.get("route-0")?.totalTokens as number;
    const now = new Date();
    expect(answer.caller).toBe("jwt:route-0");
    expect(answer.windows).toHaveLength(1);
    const [window] = answer.windows;
    expect(window).toMatchObject({
      scope: "caller",
      window: "day",
      usedTokens: BigInt(used),
      limitTokens: BigInt(worstCase),
      // The echo provider counts about four characters a token, more than the tokenizer's estimate: this
      // one call used more than its reservation, and nothing remains.
      remainingTokens: BigInt(Math.max(0, worstCase - used)),
    });
    expect(window?.limitUsd).toBeUndefined();
    const midnight = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1));
    expect(window?.resetsAt).toBe(midnight.toISOString().replace(".000Z", "Z"));
  });

  it("metrics count the refusals by product, scope and window, and the cost by product and model", async () => {
    const text = await (await fetch(app.metricsUrl)).text();
    expect(text).toContain(
      `api_key_server_budget_refusals_total{product="product-dev",scope="caller",window="day"} ${routes.length + 2}`,
    );
    const cost = /^api_key_server_cost_usd_total\{product="product-dev",model="echo-1"\} (\S+)$/m.exec(
      text,
    )?.[1];
    const one = charges.get("route-0")?.costUsd as number;
    // Every chat route's call cost the same; the embeddings calls cost what their access lines say.
    const embeddings = app.logs
      .records()
      .filter((r) => String(r["caller"]).startsWith("jwt:embed-") && typeof r["costUsd"] === "number")
      .reduce((sum, r) => sum + (r["costUsd"] as number), 0);
    expect(embeddings).toBeGreaterThan(0);
    expect(Number(cost)).toBeCloseTo(one * routes.length + embeddings, 9);
  });

  it("GetUsage refuses a product the caller may not use, as the chat RPCs do", async () => {
    const res = await fetch(`${app.url}/v1/usage/product-dev`, {
      headers: { authorization: `Bearer ${await app.token({ claims: { products: ["other"] } })}` },
    });
    expect(res.status).toBe(403);
    const missing = await fetch(`${app.url}/v1/usage/nope`, {
      headers: { authorization: `Bearer ${await app.token({ claims: { products: ["*"] } })}` },
    });
    expect(missing.status).toBe(404);
    const anonymous = await fetch(`${app.url}/v1/usage/product-dev`);
    expect(anonymous.status).toBe(401);
  });
});
