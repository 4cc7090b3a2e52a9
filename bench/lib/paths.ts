// Where the benchmark's files are.
import path from "node:path";
import { fileURLToPath } from "node:url";

/** bench/ */
export const BENCH_DIR = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
/** The repository root. */
export const ROOT = path.dirname(BENCH_DIR);
/** The server under test, as `npm run build` writes it. */
export const SERVER_ENTRY = path.join(ROOT, "dist", "src", "main.js");
/** Reports and profiles (git-ignored). */
export const OUT_DIR = path.join(BENCH_DIR, "out");
