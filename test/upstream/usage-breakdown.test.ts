import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProviderConfig } from "../../src/secrets/types.js";
import {
  createForwarder,
  type Forwarder,
  type JsonObject,
  type TokenUsage,
} from "../../src/upstream/index.js";
import { toTokenUsage } from "../../src/upstream/usage.js";
import { captureLog } from "../support/log-capture.js";
import { behaviors, startMockProvider, type Behavior, type MockProvider } from "../support/mock-provider.js";
import { collect, openAiProvider } from "./helpers.js";
import { wires } from "./provider-fixtures.js";

// Every provider's usage breakdown (cached input read and written, reasoning, audio) read into TokenUsage,
// for unary calls and for streams whose caller did not ask for usage (src/upstream/usage.ts, the adapters).

let mock: MockProvider;
let forwarder: Forwarder;

beforeAll(async () => {
  mock = await startMockProvider();
  forwarder = createForwarder({ timeoutMs: 2000, logger: captureLog().logger });
});

afterAll(async () => {
  await forwarder.close();
  await mock.close();
});

const hello = { messages: [{ role: "user", content: "Hello" }] };

const openAiUsage = {
  prompt_tokens: 1200,
  completion_tokens: 300,
  total_tokens: 1500,
  prompt_tokens_details: { cached_tokens: 1024, audio_tokens: 16 },
  completion_tokens_details: {
    reasoning_tokens: 256,
    audio_tokens: 8,
    accepted_prediction_tokens: 0,
    rejected_prediction_tokens: 0,
  },
};
const openAiExpected: TokenUsage = {
  promptTokens: 1200,
  completionTokens: 300,
  totalTokens: 1500,
  cachedInputTokens: 1024,
  audioInputTokens: 16,
  reasoningTokens: 256,
  audioOutputTokens: 8,
};
const openAiChunk = (extra: JsonObject) => ({
  id: "chatcmpl-1",
  object: "chat.completion.chunk",
  created: 1,
  model: "gpt-4o-mini",
  ...extra,
});

const anthropicUsage = {
  input_tokens: 20,
  cache_creation_input_tokens: 500,
  cache_read_input_tokens: 2000,
  output_tokens: 70,
};
const anthropicExpected: TokenUsage = {
  promptTokens: 2520,
  completionTokens: 70,
  totalTokens: 2590,
  cachedInputTokens: 2000,
  cacheWriteTokens: 500,
};
const anthropicMessage = {
  id: "msg_1",
  type: "message",
  role: "assistant",
  model: "claude-sonnet-4-5",
  content: [{ type: "text", text: "Hi" }],
  stop_reason: "end_turn",
  usage: anthropicUsage,
};

const geminiUsage = {
  promptTokenCount: 900,
  candidatesTokenCount: 40,
  thoughtsTokenCount: 60,
  cachedContentTokenCount: 512,
  totalTokenCount: 1000,
  promptTokensDetails: [
    { modality: "TEXT", tokenCount: 800 },
    { modality: "AUDIO", tokenCount: 100 },
  ],
  candidatesTokensDetails: [{ modality: "TEXT", tokenCount: 40 }],
};
const geminiExpected: TokenUsage = {
  promptTokens: 900,
  completionTokens: 100,
  totalTokens: 1000,
  cachedInputTokens: 512,
  reasoningTokens: 60,
  audioInputTokens: 100,
};
const geminiAnswer = {
  candidates: [{ index: 0, content: { role: "model", parts: [{ text: "Hi" }] }, finishReason: "STOP" }],
  usageMetadata: geminiUsage,
  modelVersion: "gemini-2.5-flash",
  responseId: "r1",
};

interface Case {
  readonly name: string;
  readonly provider: (url: string) => ProviderConfig;
  readonly model: string;
  readonly unary: Behavior;
  readonly stream: Behavior;
  readonly expected: TokenUsage;
  /** The partial readings a stream reports before its final usage (the input counts first). */
  readonly partial: TokenUsage[];
}

const cases: Case[] = [
  {
    name: "openai",
    provider: (url) => openAiProvider(url),
    model: "gpt-4o-mini",
    unary: behaviors.json(200, {
      id: "chatcmpl-1",
      object: "chat.completion",
      created: 1,
      model: "gpt-4o-mini",
      choices: [
        { index: 0, message: { role: "assistant", content: "Hi" }, logprobs: null, finish_reason: "stop" },
      ],
      usage: openAiUsage,
    }),
    stream: behaviors.sse([
      openAiChunk({
        choices: [{ index: 0, delta: { content: "Hi" }, logprobs: null, finish_reason: "stop" }],
        usage: null,
      }),
      openAiChunk({ choices: [], usage: openAiUsage }),
    ]),
    expected: openAiExpected,
    partial: [],
  },
  {
    name: "anthropic",
    provider: (url) => wires.anthropic.config(url),
    model: wires.anthropic.model,
    unary: behaviors.json(200, anthropicMessage),
    stream: wires.anthropic.stream([
      {
        type: "message_start",
        message: { ...anthropicMessage, content: [], usage: { ...anthropicUsage, output_tokens: 1 } },
      },
      { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
      { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Hi" } },
      { type: "content_block_stop", index: 0 },
      // The older form: only the output count in message_delta.
      { type: "message_delta", delta: { stop_reason: "end_turn" }, usage: { output_tokens: 70 } },
      { type: "message_stop" },
    ]),
    expected: anthropicExpected,
    // message_start: the input counts, final; one output token so far.
    partial: [{ ...anthropicExpected, completionTokens: 1, totalTokens: 2521, estimated: true }],
  },
  {
    name: "gemini",
    provider: (url) => wires.gemini.config(url),
    model: wires.gemini.model,
    unary: behaviors.json(200, geminiAnswer),
    stream: wires.gemini.stream([
      {
        candidates: [{ index: 0, content: { role: "model", parts: [{ text: "H" }] } }],
        usageMetadata: { promptTokenCount: 900, totalTokenCount: 900 },
      },
      geminiAnswer,
    ]),
    expected: geminiExpected,
    // The first event's counts so far, then the last event's, reported as partial before the stream ends.
    partial: [
      { promptTokens: 900, completionTokens: 0, totalTokens: 900, estimated: true },
      { ...geminiExpected, estimated: true },
    ],
  },
];

describe.each(cases)("$name", (c) => {
  it("unary: the usage with its breakdown", async () => {
    mock.setBehavior(c.unary);
    const result = await forwarder.complete(c.provider(mock.url), { model: c.model, ...hello });
    expect(result.usage).toStrictEqual(c.expected);
  });

  it("stream without include_usage: onUsage gets the breakdown, the caller no usage chunk", async () => {
    mock.setBehavior(c.stream);
    const seen: TokenUsage[] = [];
    const result = await collect(
      forwarder.stream(c.provider(mock.url), { model: c.model, ...hello }, { onUsage: (u) => seen.push(u) }),
    );
    expect(result.error).toBeUndefined();
    expect(seen.at(-1)).toStrictEqual(c.expected);
    expect(seen.slice(0, -1)).toStrictEqual(c.partial);
    expect(result.chunks.some((chunk) => "usage" in chunk)).toBe(false);
  });
});

describe("toTokenUsage", () => {
  it.each<[string, Parameters<typeof toTokenUsage>[0], TokenUsage | undefined]>([
    ["absent", undefined, undefined],
    ["null (a chunk before the usage chunk)", null, undefined],
    ["counts that are not numbers", { prompt_tokens: "9", completion_tokens: 1 }, undefined],
    [
      "no details: none invented",
      { prompt_tokens: 9, completion_tokens: 1 },
      { promptTokens: 9, completionTokens: 1, totalTokens: 10 },
    ],
    [
      "details partly reported: only those",
      {
        prompt_tokens: 9,
        completion_tokens: 4,
        total_tokens: 13,
        completion_tokens_details: { reasoning_tokens: 3 },
      },
      { promptTokens: 9, completionTokens: 4, totalTokens: 13, reasoningTokens: 3 },
    ],
    ["every detail", openAiUsage, openAiExpected],
  ])("%s", (_name, usage, expected) => {
    expect(toTokenUsage(usage)).toStrictEqual(expected);
  });
});
