import { readFileSync } from "node:fs";
import type { ProviderConfig, ProviderKind } from "../../src/secrets/types.js";
import type { JsonObject, TokenUsage } from "../../src/upstream/index.js";
import { behaviors, type Behavior } from "../support/mock-provider.js";
import { canaryKey } from "./helpers.js";

/** A unary fixture: our request in, the provider request expected, the provider answer, our answer out. */
export interface UnaryFixture {
  readonly about: string;
  readonly max_tokens_cap: number;
  readonly openai_request: JsonObject;
  readonly provider_request: JsonObject;
  readonly provider_response: JsonObject;
  readonly openai_response: JsonObject;
  /** The usage the adapter reads from the provider's answer, with its breakdown (src/upstream/types.ts). */
  readonly token_usage: TokenUsage;
}

/** A streaming fixture: the provider's events (each the `data:` object) and our chunks out. */
export interface StreamFixture {
  readonly about: string;
  readonly max_tokens_cap: number;
  readonly openai_request: JsonObject;
  readonly provider_request: JsonObject;
  readonly provider_events: JsonObject[];
  readonly openai_chunks: JsonObject[];
  /** The usage the adapter tells `onUsage`, whether or not the caller asked for a usage chunk. */
  readonly token_usage: TokenUsage;
}

export interface ErrorFixtures {
  readonly cases: {
    readonly name: string;
    readonly status: number;
    readonly headers?: Record<string, string>;
    readonly body: JsonObject;
    readonly code: string;
    readonly message: string;
    readonly retry_after_ms?: number;
  }[];
  /** An in-stream error event (after a 200). */
  readonly stream_error_event: JsonObject;
}

/** How each translating provider is configured against the mock and what its wire looks like. */
export interface ProviderWire {
  readonly kind: ProviderKind;
  /** The provider entry pointing at the mock, with the canary key (or a pool of keys). */
  config(mockUrl: string, keys?: readonly string[]): ProviderConfig;
  /** The path (with query) the mock must receive for `model`. */
  path(model: string, stream: boolean): string;
  /** The auth and version headers the mock must receive for `key`. */
  headers(key: string): Record<string, string>;
  /** The provider's stream as the mock sends it, cleanly ended. */
  stream(events: readonly JsonObject[]): Behavior;
  /** The same events cut off before the provider's end of stream. */
  truncated(events: readonly JsonObject[]): Behavior;
  readonly unary: readonly string[];
  readonly streams: readonly string[];
  /** A model of the provider's fixtures, for calls that do not care which. */
  readonly model: string;
}

export const anthropicFrame = (e: JsonObject) =>
  `event: ${JSON.stringify(e["type"]).slice(1, -1)}\ndata: ${JSON.stringify(e)}\n\n`;
// Gemini's SSE lines end in CRLF.
const geminiFrame = (e: JsonObject) => `data: ${JSON.stringify(e)}\r\n\r\n`;
const openAiFrame = (e: JsonObject) => `data: ${JSON.stringify(e)}\n\n`;

export const wires: Readonly<Record<"anthropic" | "gemini" | "azure-openai", ProviderWire>> = {
  anthropic: {
    kind: "anthropic",
    config: (url, keys = [canaryKey]) => ({
      name: "main-anthropic",
      kind: "anthropic",
      apiKeys: keys,
      baseUrl: url,
      models: ["claude-sonnet-4-5"],
    }),
    path: () => "/v1/messages",
    headers: (key) => ({ "x-api-key": key, "anthropic-version": "2023-06-01" }),
    stream: (events) => behaviors.sseFrames(events.map(anthropicFrame)),
    truncated: (events) => behaviors.sseFrames(events.slice(0, -1).map(anthropicFrame)),
    unary: ["text.json", "tool-call.json", "tool-result.json", "image.json"],
    streams: ["stream.json", "stream-tool-call.json"],
    model: "claude-sonnet-4-5",
  },
  gemini: {
    kind: "gemini",
    config: (url, keys = [canaryKey]) => ({
      name: "main-gemini",
      kind: "gemini",
      apiKeys: keys,
      baseUrl: `${url}/v1beta`,
      models: ["gemini-2.5-flash"],
    }),
    path: (model, stream) =>
      `/v1beta/models/${model}${stream ? ":streamGenerateContent?alt=sse" : ":generateContent"}`,
    headers: (key) => ({ "x-goog-api-key": key }),
    stream: (events) => behaviors.sseFrames(events.map(geminiFrame)),
    // Gemini has no end marker: a stream cut before the finish reason.
    truncated: (events) => behaviors.sseFrames(events.slice(0, -1).map(geminiFrame)),
    unary: ["text.json", "tool-call.json", "tool-result.json", "image.json"],
    streams: ["stream.json"],
    model: "gemini-2.5-flash",
  },
  "azure-openai": {
    kind: "azure-openai",
    config: (url, keys = [canaryKey]) => ({
      name: "main-azure",
      kind: "azure-openai",
      apiKeys: keys,
      baseUrl: url,
      models: ["gpt-4o", "gpt-4o-mini"],
      deployments: new Map([["gpt-4o", "prod-gpt4o"]]),
    }),
    path: (model) =>
      `/openai/deployments/${model === "gpt-4o" ? "prod-gpt4o" : model}/chat/completions?api-version=2024-10-21`,
    headers: (key) => ({ "api-key": key }),
    stream: (events) => behaviors.sseFrames([...events.map(openAiFrame), "data: [DONE]\n\n"]),
    truncated: (events) => behaviors.sseFrames(events.map(openAiFrame)),
    unary: ["text.json", "tool-call.json"],
    streams: ["stream.json"],
    model: "gpt-4o",
  },
};

export function providerFixture<T>(kind: string, name: string): T {
  return JSON.parse(readFileSync(new URL(`../fixtures/${kind}/${name}`, import.meta.url), "utf8")) as T;
}
