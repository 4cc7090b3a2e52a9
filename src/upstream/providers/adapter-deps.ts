import type { UpstreamHttp } from "../http.js";
import type { Clock, ProviderAdapter } from "../types.js";

/** What every adapter may use; network adapters share the forwarder's one pooled HTTP client. */
export interface AdapterDeps {
  readonly http: UpstreamHttp;
  readonly clock: Clock;
}

/** Builds a provider kind's adapter (registry.ts holds one per kind). */
export type AdapterFactory = (deps: AdapterDeps) => ProviderAdapter;
