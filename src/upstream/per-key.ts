import type { ProviderConfig } from "../secrets/types.js";
import type { UpstreamCall } from "./types.js";

/**
 * Memoises what an adapter derives from a provider and one of its keys (URL, headers), so it is built once
 * per provider object and key rather than per call. A secrets refresh builds new provider objects, so a
 * rotated key or URL is picked up and the old entries are collected with their snapshot.
 */
export function perKey<T>(
  build: (provider: ProviderConfig, key: string | undefined) => T,
): (call: UpstreamCall) => T {
  const cache = new WeakMap<ProviderConfig, T[]>();
  return (call) => {
    const { provider, keyIndex } = call;
    let entries = cache.get(provider);
    if (entries === undefined) {
      entries = [];
      cache.set(provider, entries);
    }
    let entry = entries[keyIndex];
    if (entry === undefined) {
      entry = build(provider, provider.apiKeys[keyIndex]);
      entries[keyIndex] = entry;
    }
    return entry;
  };
}
