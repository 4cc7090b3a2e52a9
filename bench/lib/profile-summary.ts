// Summarises a V8 .cpuprofile (written by `node --cpu-prof`) into the two views that find a hot
// path quickly: the functions with the most self time, and self time rolled up by where the code
// lives (our src/, generated code, each npm package, Node internals, GC/idle).
// Usage as a script: node bench/lib/profile-summary.ts <file.cpuprofile> [top]
import { readFile } from "node:fs/promises";
import process from "node:process";
import { pathToFileURL } from "node:url";

/** The parts of V8's .cpuprofile format (Chrome DevTools Protocol `Profiler.Profile`) read here. */
interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }[];
  samples: number[];
  timeDeltas?: number[];
}

/** One row of a ranking: a name, its self time and its share of the busy time. */
export interface ProfileRow {
  name: string;
  ms: number;
  share: number;
}

export interface ProfileSummary {
  busyMs: number;
  functions: ProfileRow[];
  origins: ProfileRow[];
  appCallers: ProfileRow[];
}

/** Where a call frame's code lives, for the roll-up. */
function origin(url: string, functionName: string): string {
  if (url === "") {
    if (functionName === "(garbage collector)") return "(gc)";
    if (functionName === "(idle)" || functionName === "(program)") return functionName;
    return "(native)";
  }
  if (url.startsWith("node:")) return "node internals";
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg !== null) return pkg[1] ?? "node_modules";
  if (url.includes("/dist/gen/")) return "dist/gen (generated)";
  if (url.includes("/dist/src/")) {
    const folder = /\/dist\/src\/([^/]+)\//.exec(url);
    return `dist/src/${folder?.[1] ?? ""}`;
  }
  return url;
}

/**
 * Reads a .cpuprofile and returns the busy time, the top `top` functions by self time and the
 * self time per origin, each entry with milliseconds and a share of the busy (non-idle) time.
 */
export async function summariseProfile(file: string, top = 25): Promise<ProfileSummary> {
  const profile = JSON.parse(await readFile(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  const deltas = profile.timeDeltas ?? [];
  profile.samples.forEach((id, index) => {
    // Each sample's weight is the time until the next sample; the last one has none.
    const next = deltas[index + 1] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + next);
  });
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  // The nearest frame of the app itself (dist/src) up the stack: which of our functions caused the
  // time spent in libraries and Node internals below it.
  const appFrame = (id: number): string => {
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (frame !== undefined && frame.url.includes("/dist/src/")) {
        return `${frame.functionName || "(anonymous)"} ${frame.url.replace(/^.*\/dist\//, "dist/")}:${frame.lineNumber + 1}`;
      }
    }
    return "(no app frame on the stack)";
  };
  const functions = new Map<string, number>();
  const origins = new Map<string, number>();
  const callers = new Map<string, number>();
  let busyUs = 0;
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)?.callFrame;
    if (frame === undefined) continue;
    const where = origin(frame.url, frame.functionName);
    if (where !== "(idle)") busyUs += us;
    const short = frame.url.replace(/^.*\/(node_modules|dist)\//, "$1/").replace(/^file:\/\//, "");
    const key = `${frame.functionName || "(anonymous)"} ${short}:${frame.lineNumber + 1}`;
    functions.set(key, (functions.get(key) ?? 0) + us);
    origins.set(where, (origins.get(where) ?? 0) + us);
    if (where !== "(idle)" && where !== "(gc)" && where !== "(program)") {
      const app = appFrame(id);
      callers.set(app, (callers.get(app) ?? 0) + us);
    }
  }
  const rank = (map: Map<string, number>): ProfileRow[] =>
    [...map]
      .filter(([name]) => name !== "(idle)" && !name.startsWith("(idle) "))
      .sort((a, b) => b[1] - a[1])
      .map(([name, us]) => ({ name, ms: us / 1000, share: busyUs === 0 ? 0 : us / busyUs }));
  return {
    busyMs: busyUs / 1000,
    functions: rank(functions).slice(0, top),
    origins: rank(origins),
    appCallers: rank(callers).slice(0, top),
  };
}

/** Markdown rendering of summariseProfile's result. */
export function formatProfileSummary(summary: ProfileSummary): string {
  const pct = (share: number): string => `${(share * 100).toFixed(1)}%`;
  const lines = [
    `Busy (non-idle) CPU time: ${summary.busyMs.toFixed(0)} ms`,
    "",
    "| self time by origin | ms | share |",
    "|---|---:|---:|",
  ];
  for (const row of summary.origins.slice(0, 15))
    lines.push(`| ${row.name} | ${row.ms.toFixed(0)} | ${pct(row.share)} |`);
  lines.push("", "| top functions by self time | ms | share |", "|---|---:|---:|");
  for (const row of summary.functions)
    lines.push(`| \`${row.name}\` | ${row.ms.toFixed(0)} | ${pct(row.share)} |`);
  lines.push(
    "",
    "| nearest app function up the stack (its own + callees' self time) | ms | share |",
    "|---|---:|---:|",
  );
  for (const row of summary.appCallers)
    lines.push(`| \`${row.name}\` | ${row.ms.toFixed(0)} | ${pct(row.share)} |`);
  return lines.join("\n");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write("usage: node bench/lib/profile-summary.ts <file.cpuprofile> [top]\n");
    process.exit(2);
  }
  const summary = await summariseProfile(file, Number(process.argv[3] ?? 25));
  process.stdout.write(`${formatProfileSummary(summary)}\n`);
}
