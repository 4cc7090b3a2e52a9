import type { JsonObject, JsonValue, TokenUsage } from "../types.js";
import { invalid } from "../providers/shared.js";

/** An embeddings request's `input`, read: texts, or token-id arrays (one per input). */
export type EmbeddingInputs =
  | { readonly kind: "texts"; readonly texts: readonly string[] }
  | { readonly kind: "tokens"; readonly tokens: readonly (readonly number[])[] };

const isTokenId = (v: JsonValue): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0;

/**
 * Reads OpenAI's `input`: a string, an array of strings, an array of token ids (one input) or an array of
 * arrays of token ids. Anything else (empty, mixed, non-integer ids) is a 400 naming `input`.
 */
export function readEmbeddingInputs(input: JsonValue | undefined): EmbeddingInputs {
  if (input === undefined || input === null) {
    throw invalid("input", "is required");
  }
  if (typeof input === "string") return { kind: "texts", texts: [input] };
  if (!Array.isArray(input) || input.length === 0) {
    throw invalid("input", "must be a string or a non-empty array");
  }
  if (input.every((v) => typeof v === "string")) return { kind: "texts", texts: input };
  if (input.every(isTokenId)) return { kind: "tokens", tokens: [input] };
  if (input.every((v) => Array.isArray(v) && v.length > 0 && v.every(isTokenId))) {
    return { kind: "tokens", tokens: input as number[][] };
  }
  throw invalid(
    "input",
    "must be a string, an array of strings, an array of token ids or an array of arrays of token ids",
  );
}

/** The inputs as texts; token ids are refused (400) for a provider that only takes text. */
export function textInputs(body: JsonObject, kind: string): readonly string[] {
  const inputs = readEmbeddingInputs(body["input"]);
  if (inputs.kind === "tokens")
    throw invalid("input", `token ids are not supported by provider kind "${kind}"`);
  return inputs.texts;
}

/** OpenAI's embeddings `usage` (`prompt_tokens`, `total_tokens`); undefined when absent or not numeric. */
export function embeddingUsage(usage: JsonValue | undefined): TokenUsage | undefined {
  if (typeof usage !== "object" || usage === null || Array.isArray(usage)) return undefined;
  const prompt = usage["prompt_tokens"];
  if (typeof prompt !== "number") return undefined;
  const total = usage["total_tokens"];
  return {
    promptTokens: prompt,
    completionTokens: 0,
    totalTokens: typeof total === "number" ? total : prompt,
  };
}

/** OpenAI's list answer built from vectors (the translating adapters: gemini, echo). */
export function embeddingList(
  model: string,
  vectors: readonly (readonly number[])[],
  usage: JsonObject | undefined,
): JsonObject {
  return {
    object: "list",
    data: vectors.map((embedding, index) => ({ object: "embedding", index, embedding: [...embedding] })),
    model,
    ...(usage === undefined ? {} : { usage }),
  };
}
