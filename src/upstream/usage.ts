import type { JsonValue, TokenUsage } from "./types.js";

/**
 * Reads OpenAI's `usage` object with its breakdown (`prompt_tokens_details.cached_tokens` / `audio_tokens`,
 * `completion_tokens_details.reasoning_tokens` / `audio_tokens`); undefined when absent, null or not
 * numeric (usage is then unknown). A detail the provider did not report stays undefined, not 0.
 */
export function toTokenUsage(usage: JsonValue | undefined): TokenUsage | undefined {
  if (!isObject(usage)) return undefined;
  const { prompt_tokens: prompt, completion_tokens: completion, total_tokens: total } = usage;
  if (typeof prompt !== "number" || typeof completion !== "number") return undefined;
  const input = usage["prompt_tokens_details"];
  const output = usage["completion_tokens_details"];
  return withDetails(
    {
      promptTokens: prompt,
      completionTokens: completion,
      totalTokens: typeof total === "number" ? total : prompt + completion,
    },
    {
      cachedInputTokens: numberAt(input, "cached_tokens"),
      audioInputTokens: numberAt(input, "audio_tokens"),
      reasoningTokens: numberAt(output, "reasoning_tokens"),
      audioOutputTokens: numberAt(output, "audio_tokens"),
    },
  );
}

type Details = Omit<TokenUsage, "promptTokens" | "completionTokens" | "totalTokens" | "estimated">;

/** `base` plus the details that are defined (exactOptionalPropertyTypes: no key for an unknown detail). */
export function withDetails(
  base: Pick<TokenUsage, "promptTokens" | "completionTokens" | "totalTokens">,
  details: { readonly [K in keyof Details]?: number | undefined },
): TokenUsage {
  const usage: { -readonly [K in keyof TokenUsage]: TokenUsage[K] } = { ...base };
  for (const [key, value] of Object.entries(details) as [keyof Details, number | undefined][]) {
    if (value !== undefined) usage[key] = value;
  }
  return usage;
}

function isObject(value: JsonValue | undefined): value is { [key: string]: JsonValue } {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function numberAt(value: JsonValue | undefined, key: string): number | undefined {
  if (!isObject(value)) return undefined;
  const n = value[key];
  return typeof n === "number" ? n : undefined;
}
