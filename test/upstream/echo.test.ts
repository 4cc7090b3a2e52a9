import { Code, type ConnectError } from "@connectrpc/connect";
import { afterAll, describe, expect, it } from "vitest";
import type { ProviderConfig } from "../../src/secrets/types.js";
import { createForwarder, type JsonObject, type JsonValue } from "../../src/upstream/index.js";
import { captureLog } from "../support/log-capture.js";
import { collect, failure } from "./helpers.js";

const echo: ProviderConfig = {
  name: "echo",
  kind: "echo",
  apiKeys: [],
  baseUrl: undefined,
  models: ["echo-1"],
};
const created = Date.parse("2026-03-01T12:00:00Z");
const forwarder = createForwarder({
  timeoutMs: 5000,
  logger: captureLog().logger,
  clock: { now: () => created },
});

afterAll(async () => {
  await forwarder.close();
});

const request = (content: JsonValue, extra: JsonObject = {}): JsonObject => ({
  model: "echo-1",
  messages: [
    { role: "system", content: "Be brief." },
    { role: "user", content: "first question" },
    { role: "assistant", content: "first answer" },
    { role: "user", content },
  ],
  ...extra,
});

describe("echo provider", () => {
  it("answers the last user message in today's OpenAI shape", async () => {
    const result = await forwarder.complete(echo, request("Hello echo, how are you?"));
    expect(result.body).toStrictEqual({
      id: expect.stringMatching(/^chatcmpl-echo-[0-9a-f]{32}$/) as unknown,
      object: "chat.completion",
      created: created / 1000,
      model: "echo-1",
      choices: [
        {
          index: 0,
          message: { role: "assistant", content: "Hello echo, how are you?", refusal: null, annotations: [] },
          logprobs: null,
          finish_reason: "stop",
        },
      ],
      usage: {
        prompt_tokens: 3 + 4 * 4 + 3 + 4 + 3 + 6,
        completion_tokens: 6,
        total_tokens: 3 + 4 * 4 + 3 + 4 + 3 + 6 + 6,
        prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
        completion_tokens_details: {
          reasoning_tokens: 0,
          audio_tokens: 0,
          accepted_prediction_tokens: 0,
          rejected_prediction_tokens: 0,
        },
      },
      service_tier: "default",
      system_fingerprint: null,
    });
    expect(result.usage).toStrictEqual({ promptTokens: 35, completionTokens: 6, totalTokens: 41 });
    expect(result.status).toBe(200);
  });

  it("joins the text parts of array content and ignores other parts", async () => {
    const content = [
      { type: "text", text: "look at" },
      { type: "image_url", image_url: { url: "https://example.com/a.png" } },
      { type: "text", text: "this" },
    ];
    const result = await forwarder.complete(echo, request(content));
    expect(result.body).toMatchObject({ choices: [{ message: { content: "look at\nthis" } }] });
  });

  it.each([
    ["the cap", {}, 2],
    ["max_tokens", { max_tokens: 3 }, 3],
    ["max_completion_tokens", { max_completion_tokens: 1 }, 1],
  ])("truncates to %s with finish_reason length", async (_name, extra, tokens) => {
    const result = await forwarder.complete(echo, request("a".repeat(40), extra), { maxTokensCap: 2 });
    expect(result.body).toMatchObject({
      choices: [{ message: { content: "a".repeat(tokens * 4) }, finish_reason: "length" }],
      usage: { completion_tokens: tokens },
    });
  });

  it("answers n choices", async () => {
    const result = await forwarder.complete(echo, request("hi", { n: 2 }));
    const choices = result.body["choices"] as JsonObject[];
    expect(choices.map((c) => c["index"])).toStrictEqual([0, 1]);
  });

  it("streams a role chunk, word chunks, a finish chunk and the usage chunk", async () => {
    const { chunks, error } = await collect(
      forwarder.stream(echo, request("one two  three", { stream_options: { include_usage: true } })),
    );
    expect(error).toBeUndefined();
    const deltas = chunks.map(
      (c) => ((c["choices"] as JsonObject[])[0]?.["delta"] as JsonObject | undefined) ?? null,
    );
    expect(deltas).toStrictEqual([
      { role: "assistant", content: "", refusal: null },
      { content: "one " },
      { content: "two  " },
      { content: "three" },
      {},
      null,
    ]);
    expect(chunks.every((c) => c["object"] === "chat.completion.chunk")).toBe(true);
    expect(chunks.slice(0, -1).every((c) => c["usage"] === null)).toBe(true);
    expect(chunks.at(-2)).toMatchObject({ choices: [{ finish_reason: "stop" }] });
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { completion_tokens: 4 } });
  });

  it("sends no usage chunk unless asked", async () => {
    const { chunks } = await collect(forwarder.stream(echo, request("one")));
    expect(chunks.map((c) => "usage" in c)).toStrictEqual([false, false, false]);
  });

  it("stops when the caller cancels", async () => {
    const err = await failure(forwarder.complete(echo, request("x"), { signal: AbortSignal.abort() }));
    expect((err as ConnectError).code).toBe(Code.Canceled);
    const controller = new AbortController();
    const seen: JsonObject[] = [];
    const streamed = await collect(
      (async function* () {
        for await (const c of forwarder.stream(echo, request("a b c d e f"), { signal: controller.signal })) {
          seen.push(c);
          if (seen.length === 2) controller.abort();
          yield c;
        }
      })(),
    );
    expect(streamed.chunks).toHaveLength(2);
    expect((streamed.error as ConnectError).code).toBe(Code.Canceled);
  });

  it("paces the pieces of a stream by stream_delay_ms, and stops in the middle of a pause", async () => {
    const paced: ProviderConfig = { ...echo, streamDelayMs: 80 };
    const times: number[] = [];
    const started = performance.now();
    for await (const chunk of forwarder.stream(paced, request("one two three"))) {
      times.push(performance.now() - started);
      expect(chunk["object"]).toBe("chat.completion.chunk");
    }
    // role, three words, finish: each word waits its pause, the role chunk and the finish do not.
    expect(times).toHaveLength(5);
    const gaps = times.slice(1, 4).map((t, i) => t - (times[i] ?? 0));
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(75);
    expect((times[4] ?? 0) - (times[3] ?? 0)).toBeLessThan(75);

    // A cancel during a pause ends the stream then, not after the pause.
    const controller = new AbortController();
    const slow: ProviderConfig = { ...echo, streamDelayMs: 5000 };
    const cancelAt = performance.now();
    setTimeout(() => controller.abort(), 100);
    const cut = await collect(forwarder.stream(slow, request("a b"), { signal: controller.signal }));
    expect(performance.now() - cancelAt).toBeLessThan(2000);
    expect(cut.chunks).toHaveLength(1);
    expect((cut.error as ConnectError).code).toBe(Code.Canceled);
  });
});
