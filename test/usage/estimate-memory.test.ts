import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

// An estimate keeps nothing of the text it counted (src/usage/estimate.ts): with the tokenizer's merge cache
// on, each long word of a prompt would keep the whole prompt in memory. Run in a Node process of its own
// with --expose-gc, so the heap after a full collection is what estimates left behind.

const hooks = fileURLToPath(new URL("../support/ts-hooks.mjs", import.meta.url));
const estimate = new URL("../../src/usage/estimate.ts", import.meta.url).href;

describe("token estimates and memory", () => {
  it("200 prompts of 280 KB, each with a long word of its own, leave under 4 MB behind (15 MB with the tokenizer's default cache)", async () => {
    const script = `
      import { estimateTextTokens } from "${estimate}";
      const filler = "lorem ipsum dolor sit amet ".repeat(10_000);
      estimateTextTokens("warm up " + filler);
      globalThis.gc();
      const before = process.memoryUsage().heapUsed;
      let tokens = 0;
      for (let i = 0; i < 200; i++) {
        tokens += estimateTextTokens("Supercalifragilistic" + i.toString(36).padStart(6, "q") + "expialidocious " + filler);
      }
      globalThis.gc();
      globalThis.gc();
      process.stdout.write(JSON.stringify({ retained: process.memoryUsage().heapUsed - before, tokens }));
    `;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        "--expose-gc",
        "--experimental-transform-types",
        "--no-warnings",
        "--import",
        hooks,
        "--input-type=module",
        "-e",
        script,
      ],
      { timeout: 60_000 },
    );
    const { retained, tokens } = JSON.parse(stdout) as { retained: number; tokens: number };
    expect(tokens).toBeGreaterThan(200 * 10_000);
    expect(retained).toBeLessThan(4 * 1024 * 1024);
  }, 60_000);
});
