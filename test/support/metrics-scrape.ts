import { execFile } from "node:child_process";
import { promisify } from "node:util";

/** One sample of a Prometheus text scrape. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Parses the Prometheus text format (what prom-client writes): one sample per non-comment line. */
export function parseScrape(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1] ?? ""] = (pair[2] ?? "").replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: match[1] ?? "", labels, value: Number(match[3]) });
  }
  return samples;
}

/**
 * The samples of `name` whose labels include `labels`, as `{labels} value` strings sorted, so a test can
 * compare a whole metric at once with `toEqual([...])`. Labels given in the filter are left out of the key.
 */
export function series(text: string, name: string, labels: Readonly<Record<string, string>> = {}): string[] {
  return parseScrape(text)
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .map((s) => {
      const rest = Object.entries(s.labels)
        .filter(([k]) => !(k in labels))
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, v]) => `${k}=${v}`)
        .join(",");
      return `{${rest}} ${s.value}`;
    })
    .sort();
}

/** The one sample of `name` with exactly `labels` (undefined when absent). */
export function value(
  text: string,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number | undefined {
  const wanted = Object.entries(labels);
  return parseScrape(text).find(
    (s) =>
      s.name === name &&
      Object.keys(s.labels).length === wanted.length &&
      wanted.every(([k, v]) => s.labels[k] === v),
  )?.value;
}

/** Fetches `url` and returns the body, failing on any status but 200. */
export async function scrape(url: string): Promise<string> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`scrape of ${url} answered ${res.status}`);
  return res.text();
}

/**
 * Runs `promtool check metrics` (Debian's `prometheus` package; `.ci/run` installs it) on a scrape; resolves
 * with its exit code and output. promtool also lints (names, units, help texts), which is the point.
 */
export async function promtoolCheck(text: string): Promise<{ code: number; output: string }> {
  const run = promisify(execFile);
  const child = run("promtool", ["check", "metrics"], { encoding: "utf8" });
  child.child.stdin?.end(text);
  try {
    const { stdout, stderr } = await child;
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const failed = err as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? -1, output: (failed.stdout ?? "") + (failed.stderr ?? "") };
  }
}
