import { ConnectError, Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppError } from "../../src/errors/index.js";
import { createForwarder, type Forwarder } from "../../src/upstream/index.js";
import { vectorOf } from "../../src/upstream/embeddings/echo.js";
import { fromBase64, toBase64 } from "../../src/services/embedding-service.js";
import { captureLog } from "../support/log-capture.js";
import { base64Of, embeddingsBehavior, mockVector } from "../support/mock-embeddings.js";
import { behaviors, startMockProvider, type MockProvider } from "../support/mock-provider.js";
import { canaryPieces, failure, openAiProvider } from "./helpers.js";

// The forwarder's `embed`: the same key pool, retry on another key, timeouts, cancellation, error mapping
// and scrubbed logging as `complete` (src/upstream/forwarder.ts), against the mock provider.

const keys = ["sk-embed-0-Qm7vT2xL9pW4rZ8nK3bY", "sk-embed-1-Hd5sF1gJ6kP0wE4uR9cV"] as const;
let mock: MockProvider;
let forwarder: Forwarder;
/** For the timeout case only: a loaded machine must not turn the other cases into timeouts. */
let short: Forwarder;
const log = captureLog();
const body = { model: "text-embedding-3-small", input: ["a", "b"] };

beforeAll(async () => {
  mock = await startMockProvider(embeddingsBehavior());
  forwarder = createForwarder({ timeoutMs: 10_000, logger: log.logger });
  short = createForwarder({ timeoutMs: 300, logger: log.logger });
});
afterAll(async () => {
  await forwarder.close();
  await short.close();
  await mock.close();
});

describe("forwarder.embed", () => {
  it("OpenAI: posts the body asking base64 and returns the list with its usage", async () => {
    const result = await forwarder.embed(openAiProvider(mock.url), body);
    expect(mock.requests.at(-1)?.body).toEqual({ ...body, encoding_format: "base64" });
    expect(result.body["data"]).toEqual([
      { object: "embedding", index: 0, embedding: base64Of(mockVector(0)) },
      { object: "embedding", index: 1, embedding: base64Of(mockVector(1)) },
    ]);
    expect(result.usage).toEqual({ promptTokens: 10, completionTokens: 0, totalTokens: 10 });
  });

  it("an OpenAI-compatible host gets the body exactly as sent", async () => {
    const compat = openAiProvider(mock.url, { kind: "openai-compatible", name: "compat" });
    await forwarder.embed(compat, { ...body, encoding_format: "float" });
    expect(mock.requests.at(-1)?.body).toEqual({ ...body, encoding_format: "float" });
  });

  it("an answer over the embeddings cap is a 502", async () => {
    const small = createForwarder({ timeoutMs: 2000, maxEmbeddingResponseBytes: 1024, logger: log.logger });
    try {
      mock.setBehavior(embeddingsBehavior(512));
      const err = await failure(small.embed(openAiProvider(mock.url, { name: "capped" }), body));
      expect((err as AppError).code).toBe("upstream_error");
    } finally {
      mock.setBehavior(embeddingsBehavior());
      await small.close();
    }
  });

  it("a 429 on one key is retried once on another", async () => {
    mock.setBehavior(
      behaviors.choose((req) =>
        req.headers.authorization === `Bearer ${keys[0]}`
          ? behaviors.json(429, { error: { message: "slow down" } }, { "retry-after": "30" })
          : embeddingsBehavior(),
      ),
    );
    try {
      const before = mock.requests.length;
      const result = await forwarder.embed(openAiProvider(mock.url, { name: "pooled", apiKeys: keys }), body);
      expect(result.status).toBe(200);
      const used = mock.requests.slice(before).map((r) => r.headers.authorization);
      expect(used.at(-1)).toBe(`Bearer ${keys[1]}`);
    } finally {
      mock.setBehavior(embeddingsBehavior());
    }
  });

  it.each([
    ["a 500", behaviors.json(500, { error: { message: "boom" } }), "upstream_error"],
    ["invalid JSON", behaviors.invalidJson(), "upstream_error"],
    ["a redirect (never followed)", behaviors.redirect("http://127.0.0.1:1/elsewhere"), "upstream_error"],
    ["a 400", behaviors.json(400, { error: { message: "bad input" } }), "upstream_rejected"],
    ["no answer within the timeout", behaviors.delay(2_000, embeddingsBehavior()), "upstream_timeout"],
  ])("%s: the AppError of the error table, logged without the key", async (_what, behavior, code) => {
    mock.setBehavior(behavior);
    try {
      const f = code === "upstream_timeout" ? short : forwarder;
      const err = await failure(f.embed(openAiProvider(mock.url, { name: `p-${code}` }), body));
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe(code);
      const line = log
        .records()
        .findLast((r) => r["msg"] === "Upstream call failed" || r["message"] === "Upstream call failed");
      expect(line).toMatchObject({ code });
      for (const piece of canaryPieces) expect(log.text()).not.toContain(piece);
    } finally {
      mock.setBehavior(embeddingsBehavior());
    }
  });

  it("the caller going away cancels the upstream request", async () => {
    mock.setBehavior(behaviors.delay(2_000, embeddingsBehavior()));
    try {
      const controller = new AbortController();
      const aborted = mock.aborted;
      const call = forwarder.embed(openAiProvider(mock.url), body, { signal: controller.signal });
      await mock.whenRequested(mock.requests.length + 1);
      controller.abort();
      const err = await failure(call);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.Canceled);
      await mock.whenAborted(aborted + 1);
    } finally {
      mock.setBehavior(embeddingsBehavior());
    }
  });

  it("a kind without embeddings: model_not_supported, nothing sent", async () => {
    const before = mock.requests.length;
    const anthropic = openAiProvider(mock.url, { kind: "anthropic", name: "claude" });
    expect(forwarder.embeds(anthropic)).toBe(false);
    expect(forwarder.embeds(openAiProvider(mock.url))).toBe(true);
    const err = await failure(forwarder.embed(anthropic, body));
    expect((err as AppError).code).toBe("model_not_supported");
    expect(mock.requests.length).toBe(before);
  });
});

describe("echo vectors and base64", () => {
  it("are deterministic unit vectors of the asked length", () => {
    const a = vectorOf("hello", 300);
    expect(a).toHaveLength(300);
    expect(vectorOf("hello", 300)).toEqual(a);
    expect(vectorOf("hello!", 300)).not.toEqual(a);
    expect(Math.sqrt(a.reduce((s, v) => s + v * v, 0))).toBeCloseTo(1, 5);
  });

  it("base64 is little-endian float32, both ways", () => {
    const values = mockVector(2, 7);
    expect(toBase64(values)).toBe(base64Of(values));
    expect(fromBase64(base64Of(values))).toEqual(values);
  });
});
