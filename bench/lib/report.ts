// The markdown report: the table of medians and paired ratios, the peer's rows, the metrics cost table
// and the PASS/MISS verdicts. Ratios and added latency are paired per round (the two sides ran back to
// back, so a noisy neighbour hits both alike) and then the median over rounds is taken.
import type { LoadResult } from "./load.ts";
import type { TargetKind } from "./requests.ts";
import type { Scenario } from "./scenarios.ts";
import { SSE_CHUNKS } from "./scenarios.ts";

/** One measured run of one target: the load tool's summary, resident memory after it, CPU per request. */
export interface RunRecord extends LoadResult {
  rss: number;
  cpuUs: number;
  /** sse-<n>: the largest VmRSS sampled while the streams were open, in bytes. */
  peakRss?: number;
}

/** Runs by `${target}:${scenario id}`, one per round in round order. */
export type Results = Map<string, RunRecord[]>;

export const resultKey = (target: TargetKind, scenarioId: string): string => `${target}:${scenarioId}`;

export function median(values: number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] ?? NaN)
    : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
}

export interface Summary {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  rssMb: number;
  cpuUs: number;
  errors: number;
  requests: number;
}

export function summarise(runs: RunRecord[] | undefined): Summary | undefined {
  if (runs === undefined || runs.length === 0) return undefined;
  return {
    rps: median(runs.map((r) => r.rps)),
    p50Ms: median(runs.map((r) => r.p50Ms)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
    rssMb: median(runs.map((r) => r.rss / 2 ** 20)),
    cpuUs: median(runs.map((r) => r.cpuUs)),
    errors: runs.reduce((sum, r) => sum + r.errors, 0),
    requests: runs.reduce((sum, r) => sum + r.requests, 0),
  };
}

/** Median over rounds of f(a[i], b[i]) for the rounds both sides ran; undefined when none. */
function pairedMedian(
  a: RunRecord[],
  b: RunRecord[],
  f: (a: RunRecord, b: RunRecord) => number,
): number | undefined {
  const n = Math.min(a.length, b.length);
  if (n === 0) return undefined;
  return median([...Array(n).keys()].map((i) => f(a[i] as RunRecord, b[i] as RunRecord)));
}

/** `target` (default: the server) versus the floor, paired by round: the req/s ratio and the added p50. */
export function paired(
  results: Results,
  scenario: Scenario,
  target: TargetKind = "server",
): { ratio: number | undefined; addedP50Ms: number | undefined } {
  const floor = results.get(resultKey("floor", scenario.floor)) ?? [];
  const proxy = results.get(resultKey(target, scenario.id)) ?? [];
  return {
    ratio: pairedMedian(proxy, floor, (p, f) => p.rps / f.rps),
    addedP50Ms: pairedMedian(proxy, floor, (p, f) => p.p50Ms - f.p50Ms),
  };
}

const finite = (v: number | undefined): v is number => v !== undefined && Number.isFinite(v);

export const fmt = {
  rps: (v: number | undefined): string => (finite(v) ? Math.round(v).toLocaleString("en-US") : "–"),
  ms: (v: number | undefined): string => (finite(v) ? v.toFixed(v < 10 ? 3 : 1) : "–"),
  mb: (v: number | undefined): string => (finite(v) ? v.toFixed(0) : "–"),
  pct: (v: number | undefined): string => (finite(v) ? `${(v * 100).toFixed(0)}%` : "–"),
  ratio: (v: number | undefined): string => (finite(v) ? `${v.toFixed(2)}×` : "–"),
};

/** The main table: floor and server per scenario. */
export function table(plan: Scenario[], results: Results, skipped: Map<string, string>): string {
  const lines = [
    "| scenario | floor req/s | proxy req/s | proxy/floor | floor p50 ms | proxy p50 ms | added p50 ms | floor p99 ms | proxy p99 ms | floor RSS MB | proxy RSS MB | floor CPU µs/req | proxy CPU µs/req | errors floor/proxy |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const scenario of plan) {
    const floor = summarise(results.get(resultKey("floor", scenario.floor)));
    const proxy = summarise(results.get(resultKey("server", scenario.id)));
    const note = skipped.get(scenario.id);
    const floorLabel = scenario.floor === scenario.id ? "" : ` (floor: ${scenario.floor})`;
    const pair = paired(results, scenario);
    lines.push(
      `| ${scenario.title}${floorLabel}${note === undefined ? "" : ` — ${note}`} | ${fmt.rps(floor?.rps)} | ${fmt.rps(proxy?.rps)} | ${fmt.pct(pair.ratio)} | ` +
        `${fmt.ms(floor?.p50Ms)} | ${fmt.ms(proxy?.p50Ms)} | ${fmt.ms(pair.addedP50Ms)} | ${fmt.ms(floor?.p99Ms)} | ${fmt.ms(proxy?.p99Ms)} | ` +
        `${scenario.floor === scenario.id ? fmt.mb(floor?.rssMb) : "–"} | ${fmt.mb(proxy?.rssMb)} | ` +
        `${fmt.rps(floor?.cpuUs)} | ${fmt.rps(proxy?.cpuUs)} | ${floor?.errors ?? "–"}/${proxy?.errors ?? "–"} |`,
    );
  }
  return lines.join("\n");
}

/**
 * The peer gateway's rows: its req/s, latency, memory and CPU beside the floor's and the server's, with
 * each ratio paired by round (floor, server and peer ran back to back in every round).
 */
export function peerTable(plan: Scenario[], results: Results): string {
  const lines = [
    "| scenario | floor req/s | server req/s | peer req/s | server/floor | peer/floor | server/peer | floor p50 ms | server p50 ms | peer p50 ms | peer added p50 ms | peer p99 ms | peer RSS MB | server CPU µs/req | peer CPU µs/req | errors peer |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const scenario of plan) {
    const peerRuns = results.get(resultKey("peer", scenario.id));
    if (peerRuns === undefined) continue;
    const serverRuns = results.get(resultKey("server", scenario.id)) ?? [];
    const floor = summarise(results.get(resultKey("floor", scenario.floor)));
    const server = summarise(serverRuns);
    const peer = summarise(peerRuns);
    const serverPair = paired(results, scenario, "server");
    const peerPair = paired(results, scenario, "peer");
    const serverOverPeer = pairedMedian(serverRuns, peerRuns, (s, p) => s.rps / p.rps);
    lines.push(
      `| ${scenario.title} | ${fmt.rps(floor?.rps)} | ${fmt.rps(server?.rps)} | ${fmt.rps(peer?.rps)} | ` +
        `${fmt.pct(serverPair.ratio)} | ${fmt.pct(peerPair.ratio)} | ${fmt.ratio(serverOverPeer)} | ` +
        `${fmt.ms(floor?.p50Ms)} | ${fmt.ms(server?.p50Ms)} | ${fmt.ms(peer?.p50Ms)} | ${fmt.ms(peerPair.addedP50Ms)} | ` +
        `${fmt.ms(peer?.p99Ms)} | ${fmt.mb(peer?.rssMb)} | ${fmt.rps(server?.cpuUs)} | ${fmt.rps(peer?.cpuUs)} | ${peer?.errors ?? "–"} |`,
    );
  }
  return lines.join("\n");
}

/**
 * Metrics on versus off: CPU per request of the server with metrics and of the one without, paired by
 * round (they ran back to back), with the spread of the per-round differences as the noise.
 */
export function metricsCostTable(plan: Scenario[], results: Results): string {
  const lines = [
    "| scenario | req/s on | req/s off | CPU µs/req on | CPU µs/req off | cost per request (median of rounds) | per-round costs |",
    "|---|---:|---:|---:|---:|---:|---|",
  ];
  for (const scenario of plan) {
    const on = results.get(resultKey("server", scenario.id)) ?? [];
    const off = results.get(resultKey("bare", scenario.id)) ?? [];
    const n = Math.min(on.length, off.length);
    if (n === 0) continue;
    const rounds = [...Array(n).keys()].map((i) => [on[i] as RunRecord, off[i] as RunRecord] as const);
    const costs = rounds.map(([a, b]) => (a.cpuUs - b.cpuUs) / b.cpuUs);
    const a = summarise(on);
    const b = summarise(off);
    const signed = (v: number): string => `${v >= 0 ? "+" : ""}${(v * 100).toFixed(1)}%`;
    lines.push(
      `| ${scenario.title} | ${fmt.rps(a?.rps)} | ${fmt.rps(b?.rps)} | ${fmt.rps(a?.cpuUs)} | ${fmt.rps(b?.cpuUs)} | ` +
        `${signed(median(costs))} (${fmt.rps(median(rounds.map(([x, y]) => x.cpuUs - y.cpuUs)))} µs) | ${costs.map(signed).join(", ")} |`,
    );
  }
  return lines.join("\n");
}

/** The SSE streams of sse-<n> over all rounds of one target: counts summed, worst gap, worst peak RSS. */
export interface SseSummary {
  streams: number;
  completed: number;
  errors: number;
  detail: string;
  maxGapMs: number;
  /** Median over rounds of each round's p99 gap. */
  p99GapMs: number;
  peakRssMb: number;
}

export function summariseSse(runs: RunRecord[] | undefined): SseSummary | undefined {
  const waves = (runs ?? []).flatMap((r) => (r.sse === undefined ? [] : [{ ...r.sse, peakRss: r.peakRss }]));
  if (waves.length === 0) return undefined;
  const sum = (f: (w: (typeof waves)[number]) => number): number => waves.reduce((n, w) => n + f(w), 0);
  const worst = (values: number[]): number => {
    const finiteValues = values.filter((v) => Number.isFinite(v));
    return finiteValues.length === 0 ? NaN : Math.max(...finiteValues);
  };
  return {
    streams: sum((w) => w.streams),
    completed: sum((w) => w.completed),
    errors: sum((w) => w.errors),
    detail:
      `non-200 ${sum((w) => w.non200)}, missing chunks ${sum((w) => w.missingChunks)}, no [DONE] ${sum((w) => w.noDone)}, ` +
      `error events ${sum((w) => w.errorEvents)}, socket errors ${sum((w) => w.socketErrors)}`,
    maxGapMs: worst(waves.map((w) => w.maxGapMs)),
    p99GapMs: median(waves.map((w) => w.p99GapMs)),
    peakRssMb: worst(waves.map((w) => (w.peakRss ?? NaN) / 2 ** 20)),
  };
}

/** The sse-<n> rows: what the streams carried through the floor and through the server. */
export function sseTable(plan: Scenario[], results: Results): string {
  const lines = [
    "| scenario | target | streams | completed | errors | max gap ms | p99 gap ms | p50 stream ms | p99 stream ms | peak RSS MB |",
    "|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
  ];
  for (const scenario of plan.filter((s) => s.api === "sse")) {
    for (const target of ["floor", "server"] as const) {
      const runs = results.get(resultKey(target, scenario.id));
      const sse = summariseSse(runs);
      const whole = summarise(runs);
      if (sse === undefined) continue;
      lines.push(
        `| ${scenario.title} | ${target} | ${sse.streams} | ${sse.completed} | ${sse.errors} (${sse.detail}) | ` +
          `${fmt.ms(sse.maxGapMs)} | ${fmt.ms(sse.p99GapMs)} | ${fmt.ms(whole?.p50Ms)} | ${fmt.ms(whole?.p99Ms)} | ${fmt.mb(sse.peakRssMb)} |`,
      );
    }
  }
  return lines.join("\n");
}

/** The largest inter-chunk gap a stream of sse-1000 may have (issue 17). */
export const SSE_MAX_GAP_MS = 1000;

/** PASS/MISS for each target of bench/README.md (issue 17) that the plan measures. */
export function verdicts(plan: Scenario[], results: Results): string {
  const lines: string[] = [];
  const check = (label: string, ok: boolean | undefined, detail: string): void => {
    lines.push(`- ${ok === undefined ? "n/a " : ok ? "PASS" : "MISS"} ${label}: ${detail}`);
  };
  const scenario = (key: string): Scenario | undefined => plan.find((s) => s.key === key);
  const serverRuns = (s: Scenario): RunRecord[] => results.get(resultKey("server", s.id)) ?? [];
  const rest32 = scenario("rest-32");
  if (rest32 !== undefined) {
    const { ratio } = paired(results, rest32);
    check(
      "REST 32 conns ≥ 60% of the floor's req/s",
      ratio === undefined ? undefined : ratio >= 0.6,
      fmt.pct(ratio),
    );
  }
  // Connect and gRPC against the server's own REST at 32 connections, paired by round like the floor ratios.
  for (const [id, label, target] of [
    ["connect-32", "Connect JSON (connect-32)", 0.9],
    ["grpc-32", "gRPC one stream per connection (grpc-32)", 0.9],
    ["grpc-1x32", "gRPC 1 conn × 32 streams (grpc-1x32, reported; the target is grpc-32's)", undefined],
  ] as const) {
    const other = scenario(id);
    if (other === undefined || rest32 === undefined) continue;
    const ratio = pairedMedian(serverRuns(other), serverRuns(rest32), (o, r) => o.rps / r.rps);
    const detail = `${fmt.pct(ratio)} of REST (${fmt.rps(summarise(serverRuns(other))?.rps)} vs ${fmt.rps(summarise(serverRuns(rest32))?.rps)} req/s)`;
    if (target === undefined) lines.push(`- info ${label}: ${detail}`);
    else
      check(
        `${label} ≥ ${target * 100}% of REST (rest-32) req/s`,
        ratio === undefined ? undefined : ratio >= target,
        detail,
      );
  }
  const slow = scenario("slow-512");
  if (slow !== undefined) {
    const { ratio } = paired(results, slow);
    const runs = serverRuns(slow);
    const p = summarise(runs);
    // The largest RSS after any round, not the median: "under 200 MB" holds for every round or not at all.
    const rssMb = runs.length === 0 ? undefined : Math.max(...runs.map((r) => r.rss / 2 ** 20));
    check(
      `${slow.connections} slow calls ≥ 80% of the floor's req/s, 0 errors, RSS < 200 MB`,
      ratio === undefined || p === undefined || rssMb === undefined
        ? undefined
        : ratio >= 0.8 && p.errors === 0 && rssMb < 200,
      `${fmt.pct(ratio)}, ${p?.errors ?? "–"} errors, ${fmt.mb(rssMb)} MB`,
    );
  }
  const rest1 = scenario("rest-1");
  if (rest1 !== undefined) {
    const { addedP50Ms } = paired(results, rest1);
    check(
      "REST 1 conn added p50 ≤ 0.3 ms",
      addedP50Ms === undefined ? undefined : addedP50Ms <= 0.3,
      `${fmt.ms(addedP50Ms)} ms`,
    );
  }
  const sse = scenario("sse-1000");
  if (sse !== undefined) {
    const s = summariseSse(results.get(resultKey("server", sse.id)));
    check(
      `${sse.connections} concurrent SSE streams of ${SSE_CHUNKS} chunks: 0 errors, no gap over ${SSE_MAX_GAP_MS / 1000} s, peak RSS reported`,
      s === undefined
        ? undefined
        : s.errors === 0 && s.completed > 0 && s.maxGapMs <= SSE_MAX_GAP_MS && Number.isFinite(s.peakRssMb),
      s === undefined
        ? "not measured"
        : `${s.completed}/${s.streams} streams completed, ${s.errors} errors (${s.detail}), max gap ${fmt.ms(s.maxGapMs)} ms, p99 gap ${fmt.ms(s.p99GapMs)} ms, peak RSS ${fmt.mb(s.peakRssMb)} MB`,
    );
  }
  return lines.join("\n");
}

export interface ReportInput {
  plan: Scenario[];
  results: Results;
  skipped: Map<string, string>;
  failures: string[];
  rounds: number;
  duration: number;
  warmup: number;
  nice: number | undefined;
  /** The CPUs of the processes under test and of the rest, when pinned. */
  pinned: { testCpu: string; otherCpus: string } | undefined;
  /** The memory cgroup sentence (each in a 512 MiB memory cgroup, or unconstrained and why). */
  memory: string;
  /** The server's NODE_OPTIONS; undefined with --floor-only. */
  serverNodeOptions: string | undefined;
  /** The metrics scrapes; undefined with metrics off. */
  scraped: { scrapes: number; failed: number } | undefined;
  /** --metrics compare ran the server without metrics too. */
  compared: boolean;
  /** The peer, when --peer ran one. */
  peer:
    | { title: string; package: string; version: string; howRun: string; peakRssMb: number | undefined }
    | undefined;
  loadBefore: number;
  loadAfter: number;
  machine: string;
  command: string;
  serverPeakRssMb: number | undefined;
  /** The CPU profile summary (markdown) with --cpu-prof, or why there is none. */
  profile: string | undefined;
}

export function renderReport(input: ReportInput): string {
  const report = [
    `## Results (${new Date().toISOString()})`,
    "",
    `Machine: ${input.machine}; wrk and h2load on the same host. ` +
      `Rounds: ${input.rounds} × ${input.duration} s (warm-up ${input.warmup} s), medians shown${input.nice === undefined ? "" : `, every process at nice ${input.nice}`}. ` +
      (input.pinned !== undefined
        ? `The floor and the server${input.peer === undefined ? "" : " and the peer"} ran alone on CPU ${input.pinned.testCpu}; the mock, wrk/h2load and the harness on CPU ${input.pinned.otherCpus}. `
        : "Processes were not pinned to CPUs. ") +
      `Memory of the floor and the server${input.peer === undefined ? "" : " and the peer"}: ${input.memory}` +
      (input.serverNodeOptions === undefined
        ? ""
        : `; the server${input.peer === undefined ? "" : " and the peer"} with NODE_OPTIONS="${input.serverNodeOptions}" (from the Dockerfile)`) +
      ". " +
      (input.scraped === undefined
        ? "Metrics off. "
        : `Metrics on: scraped every 5 s during the run (${input.scraped.scrapes} scrape${input.scraped.scrapes === 1 ? "" : "s"}, ${input.scraped.failed} failed). `) +
      `1-minute load average ${input.loadBefore.toFixed(1)} at the start, ${input.loadAfter.toFixed(1)} at the end (other work on the host skews absolute numbers; the paired ratios less so).`,
    "",
    `Command: \`${input.command}\``,
    "",
    table(input.plan, input.results, input.skipped),
    "",
    ...(input.compared
      ? [
          "Metrics on versus off (`--metrics compare`): the server above (metrics recorded and scraped) and the same server without metrics, CPU per answered request, paired by round:",
          "",
          metricsCostTable(input.plan, input.results),
          "",
        ]
      : []),
    ...(input.peer === undefined
      ? []
      : [
          `Peer: ${input.peer.title} (\`${input.peer.package}@${input.peer.version}\`, from npm, installed outside the project), run as ${input.peer.howRun}, on the same mock, in the same rounds right after the server; its pre-flight call had to return the mock's answer. Ratios paired by round:`,
          "",
          peerTable(input.plan, input.results),
          "",
          ...(input.peer.peakRssMb === undefined
            ? []
            : [`Peer peak RSS (VmHWM) over the run: ${fmt.mb(input.peer.peakRssMb)} MB.`, ""]),
        ]),
    "Floor = the raw forwarder (Node http, keep-alive agent, no parsing). Connect and gRPC rows compare with the REST floor at the same concurrency (the floor speaks HTTP/1.1 only). gRPC runs use h2load (one stream per connection, except the 1 conn × 32 streams row); its errors are transport errors, non-2xx and calls with no answer DATA (a gRPC error is HTTP 200 + grpc-status), and every gRPC scenario makes a checked real call before and after the load.",
    "",
    input.serverPeakRssMb === undefined
      ? ""
      : `Server peak RSS (VmHWM) over the run: ${fmt.mb(input.serverPeakRssMb)} MB.`,
    "",
    ...(input.plan.some((s) => s.api === "sse")
      ? [
          "SSE streams (one wave per round, all opened at once, each on its own connection; a gap is the time between two consecutive events of one stream, the response headers counting as the first; peak RSS is the largest VmRSS sampled every 50 ms while the streams were open):",
          "",
          sseTable(input.plan, input.results),
          "",
        ]
      : []),
    "Targets:",
    "",
    verdicts(input.plan, input.results),
  ];
  if (input.profile !== undefined) report.push("", input.profile);
  if (input.skipped.size > 0) report.push("", ...[...input.skipped].map(([id, why]) => `- ${id}: ${why}`));
  if (input.failures.length > 0) report.push("", "Failures:", "", ...input.failures.map((f) => `- ${f}`));
  return report.join("\n");
}
