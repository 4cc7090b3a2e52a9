import type { ProviderKind } from "../../secrets/types.js";
import type { UpstreamHttp } from "../http.js";
import type { Clock, ProviderAdapter } from "../types.js";
import { createEchoAdapter } from "./echo.js";
import { createOpenAiAdapter } from "./openai.js";

/** What every adapter may use; network adapters share the forwarder's one pooled HTTP client. */
export interface AdapterDeps {
  readonly http: UpstreamHttp;
  readonly clock: Clock;
}

export type AdapterFactory = (deps: AdapterDeps) => ProviderAdapter;

/**
 * Every provider kind (SPEC S14) to its adapter; `null` marks a kind that is configurable but not built yet
 * (calls fail as `upstream_error`). Adding a provider: one file in this folder and one line here. Being a
 * full `Record`, a new kind in `providerKinds` does not compile until it gets a line.
 */
export const adapterRegistry: Readonly<Record<ProviderKind, AdapterFactory | null>> = {
  openai: (deps) =>
    createOpenAiAdapter(deps, {
      kind: "openai",
      capField: "max_completion_tokens",
      allowDefaultBaseUrl: true,
      requireApiKey: true,
    }),
  "openai-compatible": (deps) =>
    createOpenAiAdapter(deps, {
      kind: "openai-compatible",
      capField: "max_tokens",
      allowDefaultBaseUrl: false,
      requireApiKey: false,
    }),
  echo: createEchoAdapter,
  "azure-openai": null,
  anthropic: null,
  gemini: null,
};
