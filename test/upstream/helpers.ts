import { readFileSync } from "node:fs";
import type { ProviderConfig } from "../../src/secrets/types.js";
import type { JsonObject } from "../../src/upstream/index.js";

/** A provider key nobody would write by accident; no output of ours may contain it or a piece of it. */
export const canaryKey = "sk-canary-7fJ2mQ9xLw4RtYb8NvKp3ZQzX7";
export const canaryPieces = [canaryKey, canaryKey.slice(0, 4), canaryKey.slice(-4)] as const;

export function openAiProvider(baseUrl: string, overrides: Partial<ProviderConfig> = {}): ProviderConfig {
  return {
    name: "main-openai",
    kind: "openai",
    apiKeys: [canaryKey],
    baseUrl: `${baseUrl}/v1`,
    models: ["gpt-4o-mini"],
    ...overrides,
  };
}

export function fixture<T = JsonObject>(name: string): T {
  return JSON.parse(readFileSync(new URL(`../fixtures/openai/${name}`, import.meta.url), "utf8")) as T;
}

/** The rejection of a promise that must fail (fails the test if it resolves). */
export async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected the call to fail, but it succeeded");
}

/** Drains a stream, keeping what arrived before a failure. */
export async function collect(
  stream: AsyncIterable<JsonObject>,
): Promise<{ chunks: JsonObject[]; error: unknown }> {
  const chunks: JsonObject[] = [];
  try {
    for await (const chunk of stream) chunks.push(chunk);
  } catch (error) {
    return { chunks, error };
  }
  return { chunks, error: undefined };
}

export const plainRequest: JsonObject = fixture("request-plain.json");
