import type { ProviderKind } from "../../secrets/types.js";
import type { AdapterFactory } from "./adapter-deps.js";
import { createAnthropicAdapter } from "./anthropic.js";
import { createAzureOpenAiAdapter } from "./azure-openai.js";
import { createEchoAdapter } from "./echo.js";
import { createGeminiAdapter } from "./gemini.js";
import { bearerTarget, createOpenAiAdapter, openAiDefaultBaseUrl } from "./openai.js";
import { misconfigured } from "./shared.js";

/**
 * Every provider kind (docs/config.md) to its adapter. Adding a provider: one file in this folder and one line
 * here (docs/architecture.md). Being a full `Record`, a new kind in `providerKinds` does not compile until
 * it gets a line, so no configurable kind is left without an adapter.
 */
export const adapterRegistry: Readonly<Record<ProviderKind, AdapterFactory>> = {
  openai: (deps) =>
    createOpenAiAdapter(deps, {
      kind: "openai",
      capField: "max_completion_tokens",
      target: (provider, key) => {
        if (key === undefined) throw misconfigured(provider, "api_key is missing");
        return bearerTarget(provider.baseUrl ?? openAiDefaultBaseUrl, key);
      },
    }),
  "openai-compatible": (deps) =>
    createOpenAiAdapter(deps, {
      kind: "openai-compatible",
      capField: "max_tokens",
      target: (provider, key) => {
        if (provider.baseUrl === undefined) throw misconfigured(provider, "base_url is required");
        return bearerTarget(provider.baseUrl, key);
      },
    }),
  "azure-openai": createAzureOpenAiAdapter,
  anthropic: createAnthropicAdapter,
  gemini: createGeminiAdapter,
  echo: createEchoAdapter,
};
