// The load generators: wrk for HTTP/1.1 (REST, Connect JSON) through bench/lib/wrk-post.lua, h2load for
// gRPC over h2c, bench/lib/sse-load.ts for the SSE streams of sse-<n>. Each returns the same summary of one
// measured run (sse-<n> adds its per-stream counts and gaps).
import { Buffer } from "node:buffer";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import process from "node:process";
import { BENCH_DIR } from "./paths.ts";
import { loadCommand, run } from "./processes.ts";
import type { BenchRequest } from "./requests.ts";
import type { Scenario } from "./scenarios.ts";
import { SSE_CHUNKS, SSE_SPREAD_MS } from "./scenarios.ts";
import type { SseLoadConfig, SseStats } from "./sse-load.ts";

export interface LoadResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  errors: number;
  errorDetail: string;
  /** sse-<n> only: what the streams carried. */
  sse?: SseStats;
}

/** What wrk-post.lua prints on its BENCH_RESULT line. */
interface WrkSummary {
  requests: number;
  duration_us: number;
  connect: number;
  read: number;
  write: number;
  status: number;
  timeout: number;
  p50_us: number;
  p99_us: number;
}

async function wrk(
  port: number,
  request: BenchRequest,
  connections: number,
  seconds: number,
  scratch: string,
): Promise<LoadResult> {
  const bodyFile = path.join(scratch, "body.bin");
  await writeFile(bodyFile, request.body);
  const headers = { "content-type": "application/json", ...request.headers };
  const env = {
    BENCH_BODY_FILE: bodyFile,
    BENCH_HEADERS: Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}`)
      .join("\n"),
  };
  // One wrk thread: it handles hundreds of connections with epoll and leaves the second core to the
  // process under test and the mock.
  const args = [
    "-t1",
    `-c${connections}`,
    `-d${seconds}s`,
    "--timeout",
    "10s",
    "-s",
    path.join(BENCH_DIR, "lib", "wrk-post.lua"),
  ];
  const [command, commandArgs] = loadCommand("wrk", [...args, `http://127.0.0.1:${port}${request.path}`]);
  const result = await run(command, commandArgs, env);
  const line = /^BENCH_RESULT (\{.*\})$/m.exec(result.stdout);
  if (result.code !== 0 || line?.[1] === undefined)
    throw new Error(`wrk failed (${result.code}): ${result.stderr}${result.stdout}`);
  const r = JSON.parse(line[1]) as WrkSummary;
  return {
    rps: r.requests / (r.duration_us / 1e6),
    p50Ms: r.p50_us / 1000,
    p99Ms: r.p99_us / 1000,
    requests: r.requests,
    errors: r.connect + r.read + r.write + r.status + r.timeout,
    errorDetail: `connect ${r.connect}, read ${r.read}, write ${r.write}, status ${r.status}, timeout ${r.timeout}`,
  };
}

async function h2load(
  port: number,
  request: BenchRequest,
  connections: number,
  streams: number,
  seconds: number,
  scratch: string,
  expectedResponseBytes: number,
): Promise<LoadResult> {
  const bodyFile = path.join(scratch, "body.bin");
  const logFile = path.join(scratch, "h2load.log");
  await writeFile(bodyFile, request.body);
  await rm(logFile, { force: true });
  const headerArgs = Object.entries(request.headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]);
  const args = [
    "-t1",
    `-c${connections}`,
    `-m${streams}`,
    `-D${seconds}`,
    "-d",
    bodyFile,
    `--log-file=${logFile}`,
    ...headerArgs,
  ];
  const [command, commandArgs] = loadCommand("h2load", [...args, `http://127.0.0.1:${port}${request.path}`]);
  const result = await run(command, commandArgs);
  const out = result.stdout;
  const counts =
    /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(
      out,
    );
  const finished = /finished in ([\d.]+)(s|ms)/.exec(out);
  const statuses = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  // "traffic: 12.19KB (12487) total, 801B (801) headers (space savings 94.27%), 6.51KB (6669) data"
  const data = /^traffic: .*\((\d+)\) data$/m.exec(out);
  if (result.code !== 0 || counts === null || finished === null || statuses === null) {
    throw new Error(`h2load failed (${result.code}): ${result.stderr}${out}`);
  }
  const elapsed = Number(finished[1]) / (finished[2] === "ms" ? 1000 : 1);
  const succeeded = Number(counts[4]);
  const failed = Number(counts[5]) + Number(counts[6]) + Number(counts[7]);
  const non2xx = Number(statuses[2]) + Number(statuses[3]) + Number(statuses[4]);
  // A gRPC error is HTTP 200 with grpc-status in a trailers-only answer, i.e. no DATA bytes: so
  // fewer DATA bytes than succeeded × (one answer's size) means some calls failed.
  const dataBytes = Number(data?.[1] ?? NaN);
  const grpcErrors =
    expectedResponseBytes > 0 && Number.isFinite(dataBytes)
      ? Math.max(0, Math.round(succeeded - dataBytes / expectedResponseBytes))
      : 0;
  const latencies = (await readFile(logFile, "utf8"))
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => Number(l.split("\t")[2]))
    .filter((n) => Number.isFinite(n))
    .sort((a, b) => a - b);
  const pct = (p: number): number =>
    latencies.length === 0
      ? NaN
      : (latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN) / 1000;
  return {
    rps: succeeded / elapsed,
    p50Ms: pct(0.5),
    p99Ms: pct(0.99),
    requests: succeeded,
    errors: failed + non2xx + grpcErrors,
    errorDetail: `failed/errored/timeout ${failed}, non-2xx ${non2xx}, gRPC errors (by DATA bytes) ${grpcErrors}`,
  };
}

/**
 * Runs the SSE driver (bench/lib/sse-load.ts) in a process of its own for one wave of `config.streams`
 * streams; rejects when it does not print its result.
 */
export async function sseWave(config: SseLoadConfig): Promise<SseStats> {
  const [command, args] = loadCommand(process.execPath, [path.join(BENCH_DIR, "lib", "sse-load.ts")]);
  const result = await run(command, args, { BENCH_SSE_CONFIG: JSON.stringify(config) });
  const line = /^SSE_RESULT (\{.*\})$/m.exec(result.stdout);
  if (result.code !== 0 || line?.[1] === undefined)
    throw new Error(`the SSE driver failed (${result.code}): ${result.stderr}${result.stdout}`);
  return JSON.parse(line[1]) as SseStats;
}

/** sse-<n>: one wave per run, whatever the duration (each stream lasts SSE_SPREAD_MS). */
async function sse(port: number, request: BenchRequest, streams: number): Promise<LoadResult> {
  const stats = await sseWave({
    port,
    path: request.path,
    body: Buffer.from(request.body).toString("utf8"),
    headers: request.headers,
    streams,
    expectedChunks: SSE_CHUNKS,
    timeoutMs: SSE_SPREAD_MS + 30_000,
  });
  return {
    rps: stats.completed / (stats.wallMs / 1000),
    p50Ms: stats.p50DurationMs,
    p99Ms: stats.p99DurationMs,
    requests: stats.completed,
    errors: stats.errors,
    errorDetail:
      `non-200 ${stats.non200}, missing chunks ${stats.missingChunks}, no [DONE] ${stats.noDone}, ` +
      `error events ${stats.errorEvents}, socket errors ${stats.socketErrors}`,
    sse: stats,
  };
}

/**
 * One run of `seconds` of load on a target; `expectedResponseBytes` is one gRPC answer's size (from the
 * pre-flight call), 0 when unknown.
 */
export function load(
  port: number,
  scenario: Scenario,
  request: BenchRequest,
  seconds: number,
  scratch: string,
  expectedResponseBytes: number,
): Promise<LoadResult> {
  if (scenario.api === "sse") return sse(port, request, scenario.connections);
  return scenario.api === "grpc"
    ? h2load(port, request, scenario.connections, scenario.streams, seconds, scratch, expectedResponseBytes)
    : wrk(port, request, scenario.connections, seconds, scratch);
}
