import type { JsonValue, TokenUsage } from "./types.js";

/** Reads OpenAI's `usage` object; undefined when absent, null or not numeric (usage is then unknown). */
export function toTokenUsage(usage: JsonValue | undefined): TokenUsage | undefined {
  if (typeof usage !== "object" || usage === null || Array.isArray(usage)) return undefined;
  const { prompt_tokens: prompt, completion_tokens: completion, total_tokens: total } = usage;
  if (typeof prompt !== "number" || typeof completion !== "number") return undefined;
  return {
    promptTokens: prompt,
    completionTokens: completion,
    totalTokens: typeof total === "number" ? total : prompt + completion,
  };
}
