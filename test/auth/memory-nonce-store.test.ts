import { describe, expect, it } from "vitest";
import { createMemoryNonceStore } from "../../src/auth/index.js";

describe("memory nonce store", () => {
  it("accepts a nonce once within its lifetime and again after it expired", async () => {
    let now = 1_000_000;
    const store = createMemoryNonceStore({ now: () => now });
    expect(await store.remember("k", "n1", 1000)).toBe(true);
    expect(await store.remember("k", "n1", 1000)).toBe(false);
    now += 999;
    expect(await store.remember("k", "n1", 1000)).toBe(false);
    now += 1;
    expect(await store.remember("k", "n1", 1000)).toBe(true);
  });

  it("keeps nonces of different key ids apart", async () => {
    const store = createMemoryNonceStore();
    expect(await store.remember("a", "n", 60_000)).toBe(true);
    expect(await store.remember("b", "n", 60_000)).toBe(true);
    expect(await store.remember("a", "n", 60_000)).toBe(false);
  });

  it("stays within maxEntries, forgetting expired entries first and then the oldest", async () => {
    let now = 0;
    const store = createMemoryNonceStore({ maxEntries: 2, now: () => now });
    await store.remember("k", "old", 10);
    now = 5;
    await store.remember("k", "a", 1000);
    now = 20; // "old" expired
    await store.remember("k", "b", 1000);
    expect(await store.remember("k", "a", 1000)).toBe(false);
    expect(await store.remember("k", "b", 1000)).toBe(false);
    // Full with live entries: "c" pushes out the oldest ("a"), which is then new again.
    await store.remember("k", "c", 1000);
    expect(await store.remember("k", "c", 1000)).toBe(false);
    expect(await store.remember("k", "a", 1000)).toBe(true);
  });

  it.each([0, -1, 1.5])("rejects maxEntries %s", (maxEntries) => {
    expect(() => createMemoryNonceStore({ maxEntries })).toThrow(
      "nonceStore.maxEntries must be a positive integer",
    );
  });
});
