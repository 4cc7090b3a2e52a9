import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AppError } from "../../src/errors/index.js";
import type { ProviderConfig } from "../../src/secrets/types.js";
import { createForwarder, type Forwarder, type JsonObject } from "../../src/upstream/index.js";
import { captureLog } from "../support/log-capture.js";
import {
  behaviors,
  openAiChunks,
  startMockProvider,
  type Behavior,
  type MockProvider,
} from "../support/mock-provider.js";
import { collect, failure, fixture, openAiProvider, plainRequest } from "./helpers.js";

// Key pools (issue 14): calls spread over `api_keys`; 429 rests a key until its Retry-After; 401/403 take
// it out until the provider entry changes; a 429, 5xx, 401/403 or connection failure before the first byte
// is retried once on another key; with every key resting the caller gets 429 with the earliest delay.

const keys = [
  "sk-pool-0-Qm7vT2xL9pW4rZ8nK3bY",
  "sk-pool-1-Hd5sF1gJ6kP0wE4uR9cV",
  "sk-pool-2-Lx2nB8mQ3tY7zA1oI6eW",
] as const;
const ok = fixture("chat-completion-plain.json");
const chunks = fixture<JsonObject[]>("chat-completion-chunks.json");
let t = 1_750_000_000_000;
let mock: MockProvider;
let forwarder: Forwarder;
const log = captureLog();

beforeAll(async () => {
  mock = await startMockProvider();
  forwarder = createForwarder({ timeoutMs: 5000, logger: log.logger, clock: { now: () => t } });
});

afterAll(async () => {
  await forwarder.close();
  await mock.close();
});

function pool(count = 3): ProviderConfig {
  return openAiProvider(mock.url, { apiKeys: keys.slice(0, count) });
}

/** Which key index each request since `before` carried. */
function keysUsed(before: number): number[] {
  return mock.requests
    .slice(before)
    .map((r) => keys.findIndex((k) => r.headers["authorization"] === `Bearer ${k}`));
}

/** Answers by key index; keys not listed answer 200. */
function byKey(answers: Partial<Record<number, Behavior>>, fallback = behaviors.json(200, ok)): Behavior {
  return behaviors.choose((req) => {
    const index = keys.findIndex((k) => req.headers["authorization"] === `Bearer ${k}`);
    return answers[index] ?? fallback;
  });
}

const tooMany = (seconds: number) =>
  behaviors.json(
    429,
    { error: { message: "Rate limit reached", type: "requests" } },
    { "retry-after": String(seconds) },
  );
const badKey = behaviors.json(401, {
  error: { message: "Incorrect API key provided", type: "invalid_request_error" },
});

describe("key pools", () => {
  it("spread calls over the keys in turn", async () => {
    mock.setBehavior(behaviors.json(200, ok));
    const provider = pool();
    const before = mock.requests.length;
    for (let i = 0; i < 6; i++) await forwarder.complete(provider, plainRequest);
    expect(keysUsed(before)).toStrictEqual([0, 1, 2, 0, 1, 2]);
  });

  it("a 429 is retried once on another key; that key rests until its Retry-After, then returns", async () => {
    mock.setBehavior(byKey({ 0: tooMany(30) }));
    const provider = pool();
    const before = mock.requests.length;
    const result = await forwarder.complete(provider, plainRequest);
    expect(result.body).toStrictEqual(ok);
    for (let i = 0; i < 4; i++) await forwarder.complete(provider, plainRequest);
    expect(keysUsed(before)).toStrictEqual([0, 1, 2, 1, 2, 1]);
    const resting = log.records().findLast((r) => r["message"] === "Provider key resting after a 429");
    expect(resting).toMatchObject({ keyIndex: 0, retryAfterMs: 30_000, provider: "main-openai" });

    t += 30_001;
    mock.setBehavior(behaviors.json(200, ok));
    const after = mock.requests.length;
    for (let i = 0; i < 3; i++) await forwarder.complete(provider, plainRequest);
    expect(keysUsed(after).sort()).toStrictEqual([0, 1, 2]);
  });

  it.each<[number, Behavior]>([
    [401, badKey],
    [403, behaviors.json(403, { error: { message: "Forbidden in this region" } })],
  ])(
    "a %i takes the key out (logged by index, never the key) until the provider entry changes",
    async (status, bad) => {
      mock.setBehavior(byKey({ 1: bad }));
      const provider = pool();
      const before = mock.requests.length;
      for (let i = 0; i < 5; i++) {
        expect((await forwarder.complete(provider, plainRequest)).body).toStrictEqual(ok);
      }
      // Key 1 failed once, the call went on with key 2, and key 1 was never used again.
      expect(keysUsed(before)).toStrictEqual([0, 1, 2, 0, 2, 0]);
      expect(
        log.records().findLast((r) => String(r["message"]).startsWith("Provider key taken out")),
      ).toMatchObject({
        keyIndex: 1,
        upstreamStatus: status,
        severity: "ERROR",
      });
      for (const k of keys) expect(log.text()).not.toContain(k);

      // A refresh that loads a changed product secret builds a new provider object: every key is back.
      mock.setBehavior(behaviors.json(200, ok));
      const refreshed = pool();
      const after = mock.requests.length;
      for (let i = 0; i < 3; i++) await forwarder.complete(refreshed, plainRequest);
      expect(keysUsed(after)).toStrictEqual([0, 1, 2]);
    },
  );

  it.each<[string, Behavior]>([
    ["a 500", behaviors.json(500, { error: { message: "The server had an error" } })],
    ["a 503", behaviors.json(503, { error: { message: "Service unavailable" } })],
    ["a connection reset", behaviors.reset()],
  ])(
    "%s before the first byte is retried once on another key; the caller sees one answer",
    async (_n, bad) => {
      mock.setBehavior(byKey({ 0: bad }));
      const before = mock.requests.length;
      const result = await forwarder.complete(pool(), plainRequest);
      expect(result.body).toStrictEqual(ok);
      expect(result.usage).toStrictEqual({
        promptTokens: 19,
        completionTokens: 10,
        totalTokens: 29,
        cachedInputTokens: 0,
        audioInputTokens: 0,
        reasoningTokens: 0,
        audioOutputTokens: 0,
      });
      expect(keysUsed(before)).toStrictEqual([0, 1]);
      expect(
        log.records().findLast((r) => r["message"] === "Upstream call failed; retrying once on another key"),
      ).toMatchObject({ keyIndex: 0, retryKeyIndex: 1 });
    },
  );

  it("retries only once: two failures answer 502", async () => {
    mock.setBehavior(behaviors.json(500, { error: { message: "down" } }));
    const before = mock.requests.length;
    const err = await failure(forwarder.complete(pool(), plainRequest));
    expect((err as AppError).code).toBe("upstream_error");
    expect(keysUsed(before)).toStrictEqual([0, 1]);
  });

  it.each<[string, Behavior, string]>([
    [
      "a 400 (the request's fault)",
      behaviors.json(400, { error: { message: "bad temperature" } }),
      "upstream_rejected",
    ],
    ["invalid JSON after a 200", behaviors.invalidJson(), "upstream_error"],
  ])("%s is not retried", async (_n, bad, code) => {
    mock.setBehavior(bad);
    const before = mock.requests.length;
    const err = await failure(forwarder.complete(pool(), plainRequest));
    expect((err as AppError).code).toBe(code);
    expect(mock.requests.length - before).toBe(1);
  });

  it("with every key resting the caller gets 429 with the earliest Retry-After, and nothing is sent", async () => {
    mock.setBehavior(byKey({ 0: tooMany(20), 1: tooMany(10) }));
    const provider = pool(2);
    const first = await failure(forwarder.complete(provider, plainRequest));
    expect((first as AppError).code).toBe("rate_limited");
    expect((first as AppError).retryAfterMs).toBe(10_000);
    t += 4000;
    const before = mock.requests.length;
    const err = await failure(forwarder.complete(provider, plainRequest));
    expect((err as AppError).code).toBe("rate_limited");
    expect((err as AppError).retryAfterMs).toBe(6000);
    const streamed = await collect(forwarder.stream(provider, plainRequest));
    expect((streamed.error as AppError).code).toBe("rate_limited");
    expect(mock.requests.length).toBe(before);
    t += 6001;
    mock.setBehavior(behaviors.json(200, ok));
    expect((await forwarder.complete(provider, plainRequest)).body).toStrictEqual(ok);
  });

  it("a key rests at most a minute, whatever delay the provider announced", async () => {
    mock.setBehavior(byKey({ 0: tooMany(600) }));
    const provider = pool(2);
    const before = mock.requests.length;
    await forwarder.complete(provider, plainRequest);
    expect(log.records().findLast((r) => r["message"] === "Provider key resting after a 429")).toMatchObject({
      keyIndex: 0,
      retryAfterMs: 60_000,
    });
    t += 60_001;
    mock.setBehavior(behaviors.json(200, ok));
    await forwarder.complete(provider, plainRequest);
    await forwarder.complete(provider, plainRequest);
    expect(keysUsed(before)).toStrictEqual([0, 1, 0, 1]);
  });

  it("a single key (the runbook's api_key) is no pool: it never rests nor is taken out", async () => {
    const single = pool(1);
    const before = mock.requests.length;
    for (const answer of [badKey, badKey, tooMany(30), tooMany(30)]) {
      mock.setBehavior(answer);
      await failure(forwarder.complete(single, plainRequest));
    }
    mock.setBehavior(behaviors.json(200, ok));
    expect((await forwarder.complete(single, plainRequest)).body).toStrictEqual(ok);
    // Every call reached the provider with the one key, none was retried.
    expect(keysUsed(before)).toStrictEqual([0, 0, 0, 0, 0]);
  });

  it("a stream failing before its first chunk is retried on another key; the caller sees one stream", async () => {
    mock.setBehavior(
      byKey({ 0: behaviors.json(503, { error: { message: "busy" } }) }, behaviors.sse(chunks)),
    );
    const before = mock.requests.length;
    const result = await collect(forwarder.stream(pool(), plainRequest));
    expect(result.error).toBeUndefined();
    // The caller asked no usage: it gets the stream without it, as OpenAI sends it (docs/usage.md).
    expect(result.chunks).toStrictEqual(openAiChunks(chunks, false));
    expect(keysUsed(before)).toStrictEqual([0, 1]);
  });

  it("a stream failing after its first chunk is not retried (the caller already has bytes)", async () => {
    mock.setBehavior(behaviors.sse(chunks.slice(0, 1), "reset"));
    const before = mock.requests.length;
    const result = await collect(forwarder.stream(pool(), plainRequest));
    expect(result.chunks).toStrictEqual(openAiChunks(chunks.slice(0, 1), false));
    expect((result.error as AppError).code).toBe("upstream_error");
    expect(mock.requests.length - before).toBe(1);
  });

  it("no pool key ever reaches a log line", () => {
    const text = log.text();
    for (const k of keys) {
      expect(text).not.toContain(k);
      expect(text).not.toContain(k.slice(-6));
    }
  });
});
