import type { Parameters } from "fast-check";

/**
 * fast-check settings for the fuzz suite: seeded, so a CI failure replays exactly (the seed and the path
 * are in the failure message), and short by default so `npm test` stays fast. The long mode is by hand:
 * `FUZZ_RUNS=20000 npx vitest run test/fuzz` (and `FUZZ_SEED=<n>` for another seed).
 */
export function fuzzOptions<T>(ciRuns: number): Parameters<T> {
  const runs = Number(process.env["FUZZ_RUNS"] ?? ciRuns);
  const seed = Number(process.env["FUZZ_SEED"] ?? 18);
  return { numRuns: runs, seed, endOnFailure: true };
}

/** Per-test timeout for a suite of `ciRuns` calls, scaled when the long mode asks for more. */
export function fuzzTimeoutMs(ciRuns: number, msPerRun: number): number {
  const runs = Number(process.env["FUZZ_RUNS"] ?? ciRuns);
  return Math.max(30_000, runs * msPerRun * 3);
}
