import { countTokens } from "gpt-tokenizer";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type AppHarness } from "../support/app-harness.js";
import {
  canaryKey,
  canaryPieces,
  createE2eClients,
  type E2eClients,
  type Protocol,
} from "../support/e2e-clients.js";
import { scrape, value } from "../support/metrics-scrape.js";
import {
  asksForUsage,
  behaviors,
  openAiChunks,
  startMockProvider,
  type MockProvider,
} from "../support/mock-provider.js";
import { anthropicFrame } from "../upstream/provider-fixtures.js";
import { fixture } from "../upstream/helpers.js";

// Exact usage for every call (docs/usage.md), end to end on the composed server: the server always asks the
// provider for a stream's usage and charges it (tokens per minute included), a caller that did not ask sees
// exactly the stream OpenAI sends it, and a call cut short is charged the provider's usage if it arrived,
// else an estimate marked in its access line and in metrics.

/** OpenAI's stream with include_usage: three chunks with `"usage": null`, then the usage chunk (9 + 1). */
const chunks = fixture<Record<string, unknown>[]>("chat-completion-chunks.json");
const hello = [{ role: "user" as const, content: "Hello" }];
const request = { model: "gpt-4o-mini", messages: hello };
/** The fixture's usage as the access line carries it. */
const reported = {
  promptTokens: 9,
  completionTokens: 1,
  totalTokens: 10,
  cachedInputTokens: 0,
  audioInputTokens: 0,
  reasoningTokens: 0,
  audioOutputTokens: 0,
};
/**
 * The estimate of a call cut after the fixture's "Hello" chunk (src/usage/estimate.ts, o200k): the prompt
 * "Hello" with OpenAI's framing (1 + 3 + 3), and one token of output.
 */
const estimatedAfterHello = { promptTokens: 7, completionTokens: 1, totalTokens: 8, usageEstimated: true };

/** An Anthropic stream with cache reads and writes: 12 + 40 + 300 input tokens, 5 output. */
const anthropicEvents = [
  {
    type: "message_start",
    message: {
      id: "msg_1",
      type: "message",
      role: "assistant",
      model: "claude-sonnet-4-5",
      content: [],
      stop_reason: null,
      usage: {
        input_tokens: 12,
        cache_creation_input_tokens: 40,
        cache_read_input_tokens: 300,
        output_tokens: 1,
      },
    },
  },
  { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
  { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Hi there" } },
  { type: "content_block_stop", index: 0 },
  // The final counts, cumulative (the input fields repeated, as the Messages API now sends them).
  {
    type: "message_delta",
    delta: { stop_reason: "end_turn" },
    usage: {
      input_tokens: 12,
      cache_creation_input_tokens: 40,
      cache_read_input_tokens: 300,
      output_tokens: 5,
    },
  },
  { type: "message_stop" },
];

let mock: MockProvider;
let app: AppHarness;
let clients: E2eClients;
let token: string;

beforeAll(async () => {
  mock = await startMockProvider();
  const openai = { api_key: canaryKey, base_url: `${mock.url}/v1`, models: ["gpt-4o-mini"] };
  app = await startApp({
    products: {
      "product-dev": { providers: { openai } },
      "product-tpm": {
        providers: { openai },
        rate_limit: { requests_per_minute: 100, tokens_per_minute: 20 },
      },
      "product-anthropic": {
        providers: { anthropic: { api_key: canaryKey, base_url: mock.url, models: ["claude-sonnet-4-5"] } },
      },
    },
    env: { API_KEY_SERVER_STREAM_IDLE_TIMEOUT_SECONDS: "1" },
    metrics: true,
  });
  token = await app.token({ claims: { products: ["product-dev", "product-tpm", "product-anthropic"] } });
  clients = createE2eClients(app.url);
});

afterAll(async () => {
  clients.close();
  await app.close();
  await mock.close();
  const text = app.logs.text();
  for (const piece of canaryPieces) expect(text).not.toContain(piece);
});

/** The access lines written since `mark` (an index into the captured log). */
function accessLinesSince(mark: number): Record<string, unknown>[] {
  return app.logs.lines
    .slice(mark)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => "httpRequest" in r);
}

/** The one access line written since `mark`, once it is written (a cut call's line follows its answer). */
async function accessLineSince(mark: number): Promise<Record<string, unknown>> {
  while (accessLinesSince(mark).length === 0) await new Promise((resolve) => setImmediate(resolve));
  const lines = accessLinesSince(mark);
  expect(lines).toHaveLength(1);
  return lines[0] ?? {};
}

function sdk(product = "product-dev", options: Partial<ConstructorParameters<typeof OpenAI>[0]> = {}) {
  return new OpenAI({ baseURL: `${app.url}/openai/${product}/v1`, apiKey: token, maxRetries: 0, ...options });
}

/** The same SDK straight at the mock provider: what OpenAI sends a direct caller. */
function direct() {
  return new OpenAI({ baseURL: `${mock.url}/v1`, apiKey: canaryKey, maxRetries: 0 });
}

async function sdkChunks(client: OpenAI, includeUsage: boolean): Promise<unknown[]> {
  const stream = await client.chat.completions.create({
    ...request,
    stream: true,
    ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
  });
  const received: unknown[] = [];
  for await (const chunk of stream) received.push(chunk);
  return received;
}

describe("a stream's usage is always obtained", () => {
  it.each([false, true])(
    "OpenAI SDK stream (include_usage: %s): exactly the chunks OpenAI sends a direct caller; the server charges the provider's usage",
    async (includeUsage) => {
      mock.setBehavior(behaviors.openAiStream(chunks));
      const before = mock.requests.length;
      const expected = await sdkChunks(direct(), includeUsage);
      expect(expected).toStrictEqual(openAiChunks(chunks, includeUsage));
      const mark = app.logs.lines.length;
      const received = await sdkChunks(sdk(), includeUsage);
      expect(received).toStrictEqual(expected);
      // The server asked the provider for usage either way.
      expect(asksForUsage(mock.requests[before + 1]?.body)).toBe(true);
      const line = await accessLineSince(mark);
      expect(line).toMatchObject({ httpRequest: { status: 200 }, ...reported });
      expect(line).not.toHaveProperty("usageEstimated");
    },
  );

  it.each<Protocol>(["rest", "connect", "grpc"])(
    "%s stream without include_usage: no usage in the stream, the provider's usage in the access line",
    async (protocol) => {
      mock.setBehavior(behaviors.openAiStream(chunks));
      const mark = app.logs.lines.length;
      const outcome = await clients.stream(protocol, "product-dev", request, {
        authorization: `Bearer ${token}`,
      });
      expect(outcome.end.code).toBe("OK");
      expect(outcome.messages).toHaveLength(3);
      for (const message of outcome.messages) expect(message).not.toHaveProperty("usage");
      expect(await accessLineSince(mark)).toMatchObject(reported);
    },
  );

  it.each<Protocol>(["rest", "connect", "grpc"])(
    "%s stream with include_usage: the usage chunk keeps the provider's breakdown",
    async (protocol) => {
      mock.setBehavior(behaviors.openAiStream(chunks));
      const outcome = await clients.stream(
        protocol,
        "product-dev",
        { ...request, stream_options: { include_usage: true } },
        { authorization: `Bearer ${token}` },
      );
      expect(outcome.end.code).toBe("OK");
      expect(outcome.messages).toHaveLength(4);
      expect(outcome.messages.at(-1)).toMatchObject({
        choices: [],
        usage: {
          prompt_tokens: 9,
          completion_tokens: 1,
          total_tokens: 10,
          prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
          completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0 },
        },
      });
    },
  );

  it("Anthropic stream without include_usage: message_start and message_delta usage, cache reads and writes", async () => {
    mock.setBehavior(behaviors.sseFrames(anthropicEvents.map(anthropicFrame)));
    const mark = app.logs.lines.length;
    const outcome = await clients.stream(
      "rest",
      "product-anthropic",
      { model: "claude-sonnet-4-5", messages: hello },
      { authorization: `Bearer ${token}` },
    );
    expect(outcome.end.code).toBe("OK");
    for (const message of outcome.messages) expect(message).not.toHaveProperty("usage");
    const line = await accessLineSince(mark);
    expect(line).toMatchObject({
      promptTokens: 352,
      completionTokens: 5,
      totalTokens: 357,
      cachedInputTokens: 300,
      cacheWriteTokens: 40,
    });
    expect(line).not.toHaveProperty("usageEstimated");
  });
});

describe("tokens per minute are charged from streams", () => {
  // The finding: five streams in a row without include_usage were all admitted and none charged.
  // Each stream now costs the provider's 10 tokens; with 20 a minute the caller is refused once spent.
  it.each<Protocol>(["rest", "connect", "grpc"])(
    "%s: five streams without include_usage on tokens_per_minute 20: the third and later are refused 429",
    async (protocol) => {
      mock.setBehavior(behaviors.openAiStream(chunks));
      const caller = await app.token({ claims: { sub: `svc-tpm-${protocol}`, products: ["product-tpm"] } });
      const ends: string[] = [];
      const mark = app.logs.lines.length;
      for (let i = 0; i < 5; i++) {
        const outcome = await clients.stream(protocol, "product-tpm", request, {
          authorization: `Bearer ${caller}`,
        });
        ends.push(outcome.end.code);
      }
      expect(ends).toEqual(["OK", "OK", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"]);
      const lines = accessLinesSince(mark);
      expect(lines.map((l) => l["totalTokens"])).toEqual([10, 10, undefined, undefined, undefined]);
      expect(lines.slice(2).map((l) => l["limit"])).toEqual([
        "tokens_per_minute",
        "tokens_per_minute",
        "tokens_per_minute",
      ]);
    },
  );
});

describe("a call cut short is charged what it used", () => {
  it("the caller cancelling mid-stream: the estimate (prompt, text streamed so far), marked in the access line and metrics", async () => {
    mock.setBehavior(behaviors.sse(chunks.slice(0, 2), "stall"));
    const aborted = mock.aborted;
    const mark = app.logs.lines.length;
    const before = await scrape(app.metricsUrl);
    const stream = await sdk().chat.completions.create({ ...request, stream: true });
    const received: unknown[] = [];
    try {
      for await (const chunk of stream) {
        received.push(chunk);
        if (received.length === 2) stream.controller.abort();
      }
    } catch {
      // The SDK reports the abort it was asked for.
    }
    expect(received).toHaveLength(2);
    await mock.whenAborted(aborted + 1);
    const line = await accessLineSince(mark);
    expect(line).toMatchObject({ httpRequest: { status: 499 }, cut: "client", ...estimatedAfterHello });
    const after = await scrape(app.metricsUrl);
    expect(estimated(after, "in") - estimated(before, "in")).toBe(7);
    expect(estimated(after, "out") - estimated(before, "out")).toBe(1);
  });

  it.each<[string, ReturnType<typeof behaviors.sse>, Record<string, unknown>]>([
    [
      "the provider failing mid-stream: the estimate",
      behaviors.sse(chunks.slice(0, 2), "reset"),
      { httpRequest: { status: 502 }, ...estimatedAfterHello },
    ],
    [
      "the provider going silent mid-stream (idle timeout): the estimate",
      behaviors.sse(chunks.slice(0, 2), "stall"),
      { httpRequest: { status: 504 }, ...estimatedAfterHello },
    ],
    [
      "the provider failing after its usage arrived: the provider's usage",
      behaviors.sse(chunks, "reset"),
      { httpRequest: { status: 502 }, ...reported },
    ],
  ])("%s", async (_name, behavior, expected) => {
    mock.setBehavior(behavior);
    const mark = app.logs.lines.length;
    const outcome = await clients.stream("rest", "product-dev", request, {
      authorization: `Bearer ${token}`,
    });
    expect(outcome.end.code).not.toBe("OK");
    const line = await accessLineSince(mark);
    expect(line).toMatchObject(expected);
    if (expected["usageEstimated"] === undefined) expect(line).not.toHaveProperty("usageEstimated");
  });
});

describe("an estimate over text that spells a tokenizer's special tokens", () => {
  // "<|endoftext|>" in a prompt or an answer is text to a provider; the tokenizer's default refuses it.
  const special = "<|endoftext|> and <|im_start|>";
  const plainTokens = countTokens(special, { disallowedSpecial: new Set() });

  it("counts it as text: a stream cut short is charged its estimate, the caller sees the provider's error", async () => {
    const cut = structuredClone(chunks.slice(0, 2));
    const delta = (cut[1] as { choices: { delta: { content: string } }[] }).choices[0]!.delta;
    delta.content = special;
    mock.setBehavior(behaviors.sse(cut, "reset"));
    const mark = app.logs.lines.length;
    const outcome = await clients.stream(
      "rest",
      "product-dev",
      { ...request, messages: [{ role: "user", content: special }] },
      { authorization: `Bearer ${token}` },
    );
    expect(outcome.end.code).toBe("UNAVAILABLE");
    const line = await accessLineSince(mark);
    expect(line).toMatchObject({
      httpRequest: { status: 502 },
      promptTokens: 3 + 3 + plainTokens,
      completionTokens: plainTokens,
      totalTokens: 6 + 2 * plainTokens,
      usageEstimated: true,
    });
  });
});

/** `api_key_server_tokens_estimated_total` of product-dev's model in one direction (0 before the first). */
function estimated(text: string, direction: "in" | "out"): number {
  const labels = { direction, model: "gpt-4o-mini", product: "product-dev" };
  return value(text, "api_key_server_tokens_estimated_total", labels) ?? 0;
}

describe("an Anthropic stream cut after message_start", () => {
  it("is charged the provider's input counts and its output estimated", async () => {
    // Cut after the text: message_start's input counts are final, the output count never came.
    mock.setBehavior(behaviors.sseFrames(anthropicEvents.slice(0, 3).map(anthropicFrame), "reset"));
    const mark = app.logs.lines.length;
    const outcome = await clients.stream(
      "rest",
      "product-anthropic",
      { model: "claude-sonnet-4-5", messages: hello },
      { authorization: `Bearer ${token}` },
    );
    expect(outcome.end.code).toBe("UNAVAILABLE");
    expect(await accessLineSince(mark)).toMatchObject({
      httpRequest: { status: 502 },
      promptTokens: 352,
      cachedInputTokens: 300,
      cacheWriteTokens: 40,
      // "Hi there": two o200k tokens.
      completionTokens: 2,
      totalTokens: 354,
      usageEstimated: true,
    });
  });
});

describe("a stream cut by shutdown", () => {
  it("is charged the estimate, in the access line of the cut call", async () => {
    const own = await startApp({
      products: {
        "product-dev": {
          providers: { openai: { api_key: canaryKey, base_url: `${mock.url}/v1`, models: ["gpt-4o-mini"] } },
        },
      },
    });
    try {
      mock.setBehavior(behaviors.sse(chunks.slice(0, 2), "stall"));
      const requested = mock.requests.length;
      const caller = await own.token();
      const ownClients = createE2eClients(own.url);
      const outcome = ownClients.stream("grpc", "product-dev", request, {
        authorization: `Bearer ${caller}`,
      });
      await mock.whenRequested(requested + 1);
      // The grace ends with the stream still open: the server cuts it.
      await own.close(200);
      expect((await outcome).end.code).not.toBe("OK");
      ownClients.close();
      const lines = own.logs.records().filter((r) => "httpRequest" in r);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({
        httpRequest: { status: 503 },
        cut: "server",
        promptTokens: 7,
        usageEstimated: true,
      });
    } finally {
      await own.close().catch(() => undefined);
    }
  });
});
