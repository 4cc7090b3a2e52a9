import type { ProviderConfig } from "../../secrets/types.js";
import type { ProviderAdapter } from "../types.js";
import type { AdapterDeps } from "./adapter-deps.js";
import { createOpenAiAdapter } from "./openai.js";
import { misconfigured } from "./shared.js";

/** The latest generally available data-plane API version of Azure OpenAI chat completions. */
export const azureDefaultApiVersion = "2024-10-21";

/**
 * Azure OpenAI (`kind: "azure-openai"`): OpenAI's wire format at
 * `{base_url}/openai/deployments/{deployment}/chat/completions?api-version={api_version}` with the key in
 * an `api-key` header. The deployment comes from the provider's `deployments` map (model → deployment),
 * else it is the model name. The token cap goes in `max_tokens`, the field the GA API versions know.
 */
export function createAzureOpenAiAdapter(deps: AdapterDeps): ProviderAdapter {
  return createOpenAiAdapter(deps, {
    kind: "azure-openai",
    capField: "max_tokens",
    target: (provider, key) => azureTarget(provider, key, "chat/completions"),
  });
}

/**
 * Where an Azure OpenAI operation (`chat/completions`, `embeddings`) is sent:
 * `{base_url}/openai/deployments/{deployment}/{operation}?api-version=…` with the key in `api-key`. One path
 * per model, worked out on first use (a provider has a handful of models).
 */
export function azureTarget(provider: ProviderConfig, key: string | undefined, operation: string) {
  if (provider.baseUrl === undefined) throw misconfigured(provider, "base_url is required");
  if (key === undefined) throw misconfigured(provider, "api_key is missing");
  const base = new URL(provider.baseUrl);
  const prefix = base.pathname.replace(/\/+$/, "");
  const query = `?api-version=${encodeURIComponent(provider.apiVersion ?? azureDefaultApiVersion)}`;
  const paths = new Map<string, string>();
  return {
    origin: base.origin,
    headers: Object.freeze({ "api-key": key }) as Readonly<Record<string, string>>,
    path: (model: string): string => {
      let path = paths.get(model);
      if (path === undefined) {
        const deployment = provider.deployments?.get(model) ?? model;
        path = `${prefix}/openai/deployments/${encodeURIComponent(deployment)}/${operation}${query}`;
        paths.set(model, path);
      }
      return path;
    },
  };
}
