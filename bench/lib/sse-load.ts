// The load driver of the sse-<n> scenario (bench/README.md): one wave of n REST SSE streams opened at
// once, each on its own connection, read to its end. It runs in a process of its own (run by load.ts as
// `node bench/lib/sse-load.ts` with its config in BENCH_SSE_CONFIG, printing one `SSE_RESULT {json}`
// line), so parsing 1,000 streams is not charged to the harness's event loop or to the target. Per stream
// it records the HTTP status, the content chunks before `data: [DONE]`, whether [DONE] came, an
// `event: error`, a socket error or timeout, and the gaps between consecutive events.
import http from "node:http";
import { performance } from "node:perf_hooks";
import process from "node:process";
import { clearTimeout, setTimeout } from "node:timers";
import { fileURLToPath } from "node:url";

export interface SseLoadConfig {
  port: number;
  path: string;
  /** The request body (JSON text). */
  body: string;
  headers: Record<string, string>;
  streams: number;
  /** Content chunks every stream must carry before [DONE]. */
  expectedChunks: number;
  /** A stream still open this long after the wave started is cut and counted as a timeout. */
  timeoutMs: number;
}

/** What one stream did. */
export interface StreamOutcome {
  /** HTTP status; 0 when no response came. */
  status: number;
  /** Data events before [DONE] (the role, content, finish and usage chunks). */
  dataEvents: number;
  /** Data events whose `choices[0].delta.content` is a non-empty string. */
  contentChunks: number;
  done: boolean;
  errorEvent: boolean;
  /** The socket error or "timeout"; undefined when the stream ended cleanly (with or without [DONE]). */
  socketError: string | undefined;
  /** Milliseconds between consecutive events (the response headers count as the first). */
  gapsMs: number[];
  /** From the request to the end of the stream. */
  durationMs: number;
}

/** The wave's outcome: counts, the worst and the p99 inter-chunk gap, stream durations. */
export interface SseStats {
  streams: number;
  /** 200, every expected content chunk, [DONE], no error event, no socket error. */
  completed: number;
  /** Streams that were not completed (one stream counts once, under each reason it had). */
  errors: number;
  non200: number;
  missingChunks: number;
  noDone: number;
  errorEvents: number;
  socketErrors: number;
  maxGapMs: number;
  p99GapMs: number;
  p50DurationMs: number;
  p99DurationMs: number;
  /** From the first request to the last stream's end. */
  wallMs: number;
}

/** One Server-Sent Event: its `event:` field (undefined for the default) and its data lines joined. */
export interface SseEvent {
  event: string | undefined;
  data: string;
}

/** Splits a byte stream of SSE text into events (fields `event` and `data`; comments and ids ignored). */
export class SseParser {
  private buffer = "";

  push(text: string): SseEvent[] {
    this.buffer += text.replaceAll("\r\n", "\n");
    const events: SseEvent[] = [];
    let end = this.buffer.indexOf("\n\n");
    while (end !== -1) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      let event: string | undefined;
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (event !== undefined || data.length > 0) events.push({ event, data: data.join("\n") });
      end = this.buffer.indexOf("\n\n");
    }
    return events;
  }
}

function contentOf(data: string): string | undefined {
  try {
    const content = (JSON.parse(data) as { choices?: { delta?: { content?: unknown } }[] }).choices?.[0]
      ?.delta?.content;
    return typeof content === "string" ? content : undefined;
  } catch {
    return undefined;
  }
}

export function newOutcome(): StreamOutcome {
  return {
    status: 0,
    dataEvents: 0,
    contentChunks: 0,
    done: false,
    errorEvent: false,
    socketError: undefined,
    gapsMs: [],
    durationMs: 0,
  };
}

/** Counts one event of a stream into its outcome (events after [DONE] count for nothing). */
export function recordEvent(outcome: StreamOutcome, event: SseEvent): void {
  if (outcome.done) return;
  if (event.event === "error") outcome.errorEvent = true;
  else if (event.data === "[DONE]") outcome.done = true;
  else {
    outcome.dataEvents += 1;
    if ((contentOf(event.data) ?? "") !== "") outcome.contentChunks += 1;
  }
}

function openStream(config: SseLoadConfig, agent: http.Agent, cut: AbortSignal): Promise<StreamOutcome> {
  const started = performance.now();
  const outcome = newOutcome();
  return new Promise((resolve) => {
    let finished = false;
    const finish = (error?: string): void => {
      if (finished) return;
      finished = true;
      if (error !== undefined && outcome.socketError === undefined) outcome.socketError = error;
      outcome.durationMs = performance.now() - started;
      resolve(outcome);
    };
    const req = http.request(
      {
        host: "127.0.0.1",
        port: config.port,
        method: "POST",
        path: config.path,
        headers: { "content-type": "application/json", ...config.headers },
        agent,
        signal: cut,
      },
      (res) => {
        outcome.status = res.statusCode ?? 0;
        let last = performance.now();
        const parser = new SseParser();
        res.setEncoding("utf8");
        res.on("data", (text: string) => {
          for (const event of parser.push(text)) {
            const now = performance.now();
            outcome.gapsMs.push(now - last);
            last = now;
            recordEvent(outcome, event);
          }
        });
        // A clean end without [DONE] is counted as such (noDone), not as a socket error.
        res.on("end", () => finish());
        res.on("error", (error) => finish(cut.aborted ? "timeout" : error.message));
      },
    );
    req.on("error", (error) => finish(cut.aborted ? "timeout" : error.message));
    req.end(config.body);
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;
}

/** The wave's counts from each stream's outcome. */
export function summariseStreams(
  outcomes: StreamOutcome[],
  expectedChunks: number,
  wallMs: number,
): SseStats {
  const failed = (o: StreamOutcome): boolean =>
    o.status !== 200 ||
    o.contentChunks !== expectedChunks ||
    !o.done ||
    o.errorEvent ||
    o.socketError !== undefined;
  const gaps = outcomes.flatMap((o) => o.gapsMs).sort((a, b) => a - b);
  const durations = outcomes.map((o) => o.durationMs).sort((a, b) => a - b);
  const completed = outcomes.filter((o) => !failed(o)).length;
  return {
    streams: outcomes.length,
    completed,
    errors: outcomes.length - completed,
    non200: outcomes.filter((o) => o.status !== 200).length,
    missingChunks: outcomes.filter((o) => o.status === 200 && o.contentChunks !== expectedChunks).length,
    noDone: outcomes.filter((o) => o.status === 200 && !o.done).length,
    errorEvents: outcomes.filter((o) => o.errorEvent).length,
    socketErrors: outcomes.filter((o) => o.socketError !== undefined).length,
    maxGapMs: gaps.at(-1) ?? NaN,
    p99GapMs: percentile(gaps, 0.99),
    p50DurationMs: percentile(durations, 0.5),
    p99DurationMs: percentile(durations, 0.99),
    wallMs,
  };
}

/** Opens `config.streams` streams at once (one connection each) and resolves when all have ended. */
export async function runSseWave(
  config: SseLoadConfig,
): Promise<{ stats: SseStats; outcomes: StreamOutcome[] }> {
  // One socket per stream, as 1,000 separate callers would have; no pooling limit.
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const cut = new AbortController();
  const timer = setTimeout(() => cut.abort(), config.timeoutMs);
  const started = performance.now();
  try {
    const outcomes = await Promise.all(
      Array.from({ length: config.streams }, () => openStream(config, agent, cut.signal)),
    );
    return {
      stats: summariseStreams(outcomes, config.expectedChunks, performance.now() - started),
      outcomes,
    };
  } finally {
    clearTimeout(timer);
    agent.destroy();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const config = JSON.parse(process.env["BENCH_SSE_CONFIG"] ?? "null") as SseLoadConfig | null;
  if (config === null) {
    process.stderr.write("sse-load: BENCH_SSE_CONFIG (JSON) is not set\n");
    process.exit(2);
  }
  const { stats } = await runSseWave(config);
  process.stdout.write(`SSE_RESULT ${JSON.stringify(stats)}\n`);
}
