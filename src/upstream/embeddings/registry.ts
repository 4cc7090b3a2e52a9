import type { ProviderKind } from "../../secrets/types.js";
import { createEchoEmbeddings } from "./echo.js";
import { createGeminiEmbeddings } from "./gemini.js";
import { createOpenAiEmbeddings } from "./openai.js";
import type { EmbeddingAdapterFactory } from "./types.js";

/**
 * Every provider kind to its embeddings adapter, or `null` for a kind without embeddings (a call to one of
 * its models is 400 `Model not supported`). A full `Record`, like the chat registry
 * (src/upstream/providers/registry.ts): a new kind does not compile until it is decided here too.
 */
export const embeddingRegistry: Readonly<Record<ProviderKind, EmbeddingAdapterFactory | null>> = {
  openai: createOpenAiEmbeddings("openai"),
  "openai-compatible": createOpenAiEmbeddings("openai-compatible"),
  "azure-openai": createOpenAiEmbeddings("azure-openai"),
  gemini: createGeminiEmbeddings,
  echo: createEchoEmbeddings,
  // The Anthropic API has no embeddings endpoint.
  anthropic: null,
};
