// The benchmark's own pieces (bench/README.md, "Code"): its command line, the requests each target gets
// (the gRPC body from the generated code, the peer's headers), the checked pre-flight call against the
// real mock, the peer's install cache and the report's paired ratios. No timing is asserted here; the
// bench smoke in .ci/run runs the whole harness.
import { execFile, fork } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { promisify } from "node:util";
import { fromBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as pb from "../../gen/apikeyserver/v1/chat_pb.ts";
import { PEERS, installPeer, peerRuns } from "../lib/peer.ts";
import { BENCH_DIR } from "../lib/paths.ts";
import { preflight } from "../lib/preflight.ts";
import type { Results, RunRecord } from "../lib/report.ts";
import { paired, peerTable, renderReport, verdicts } from "../lib/report.ts";
import { CHAT_PATH, EXPECTED_ANSWER, requestFor } from "../lib/requests.ts";
import { scenarios } from "../lib/scenarios.ts";
import { sseWave } from "../lib/load.ts";
import type { SseLoadConfig, SseStats } from "../lib/sse-load.ts";
import { runSseWave } from "../lib/sse-load.ts";

const exec = promisify(execFile);
const RUN = path.join(BENCH_DIR, "run.ts");

/** Runs bench/run.ts with `args`; resolves with its exit code and output (never rejects on a non-zero exit). */
async function bench(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [RUN, ...args], { timeout: 15_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: unknown; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

const all = scenarios({ slowConnections: 512, sseStreams: 1000, only: undefined });
const scenario = (id: string) => {
  const found = all.find((s) => s.id === id);
  if (found === undefined) throw new Error(`no scenario ${id}`);
  return found;
};

describe("command line", () => {
  it("--help lists every option, --peer among them, and exits 0", async () => {
    const { code, stdout } = await bench(["--help"]);
    expect(code).toBe(0);
    for (const option of [
      "--smoke",
      "--rounds",
      "--duration",
      "--warmup",
      "--slow-connections",
      "--sse-streams",
      "--only",
      "--floor-only",
      "--cpu-prof",
      "--log-level",
      "--server-log",
      "--server-env",
      "--server-entry",
      "--server-node-arg",
      "--metrics",
      "--peer <name>",
      "--peer-dir",
      "--pin",
      "--memory-limit",
      "--nice",
      "--out",
    ])
      expect(stdout).toContain(option);
    expect(stdout).toContain("@portkey-ai/gateway@1.15.2");
  });

  it.each([
    [["--peer", "nginx"], '--peer takes portkey, got "nginx"'],
    [["--peer", "portkey", "--floor-only"], "--peer and --floor-only do not go together"],
    [["--peer", "portkey", "--only", "connect-1,grpc-32"], "--peer measures the REST unary scenarios"],
    [["--metrics", "sometimes"], '--metrics takes on, off or compare, got "sometimes"'],
    [["--pin", "yes"], '--pin takes on or off, got "yes"'],
    [["--rounds", "0"], '--rounds must be a positive number, got "0"'],
    [["--sse-streams", "none"], '--sse-streams must be a positive number, got "none"'],
    [["--server-env", "NOEQUALS"], '--server-env takes KEY=VALUE, got "NOEQUALS"'],
    [["--nice=high"], '--nice takes an integer, got "high"'],
    [["--only", "rest-2"], "--only matched no scenario"],
    [["--no-such-option"], "Unknown option '--no-such-option'"],
  ])("%j is refused before anything starts: %s", async (args, message) => {
    const { code, stderr } = await bench(args);
    expect(code).toBe(1);
    expect(stderr).toContain(message);
  });
});

describe("scenarios", () => {
  it("--only takes the slow scenarios by key at any --slow-connections", () => {
    const plan = scenarios({ slowConnections: 64, sseStreams: 1000, only: new Set(["slow-512", "rest-1"]) });
    expect(plan.map((s) => s.id)).toEqual(["rest-1", "slow-64"]);
    expect(plan[1]?.key).toBe("slow-512");
  });

  it("sse-<n> carries --sse-streams in its id and is found by its key", () => {
    const plan = scenarios({ slowConnections: 512, sseStreams: 50, only: new Set(["sse-1000"]) });
    expect(plan).toMatchObject([
      { id: "sse-50", key: "sse-1000", api: "sse", connections: 50, floor: "sse-50" },
    ]);
  });

  it("the peer runs the REST unary scenarios only", () => {
    expect(all.filter(peerRuns).map((s) => s.key)).toEqual(["rest-1", "rest-32", "slow-512"]);
  });
});

describe("requests", () => {
  const context = { token: "t0ken", pb, peer: { spec: PEERS.portkey, mockPort: 4321 } };

  it("the gRPC body is a 5-byte gRPC frame around the generated ChatCompletionRequest", () => {
    const request = requestFor("server", scenario("grpc-32"), context);
    expect(request.path).toBe(CHAT_PATH);
    expect(request.headers).toMatchObject({ "content-type": "application/grpc", te: "trailers" });
    const body = Buffer.from(request.body);
    expect(body[0]).toBe(0); // not compressed
    expect(body.readUInt32BE(1)).toBe(body.length - 5);
    const message = fromBinary(pb.ChatCompletionRequestSchema, body.subarray(5));
    expect(message.product).toBe("bench");
    expect(message.model).toBe("gpt-4o-mini");
    expect(message.messages).toHaveLength(1);
    expect(message.messages[0]?.role).toBe("user");
    expect(message.messages[0]?.content).toEqual({ case: "text", value: "Hello" });
  });

  it("a gRPC request without the generated code is refused", () => {
    expect(() => requestFor("server", scenario("grpc-1"), { ...context, pb: undefined })).toThrow(
      "a gRPC request needs the generated code",
    );
  });

  it("the peer gets the floor's OpenAI body with Portkey's provider and custom-host headers", () => {
    const floor = requestFor("floor", scenario("rest-32"), context);
    const peer = requestFor("peer", scenario("rest-32"), context);
    expect(peer.path).toBe("/v1/chat/completions");
    expect(Buffer.from(peer.body).toString()).toBe(Buffer.from(floor.body).toString());
    expect(peer.headers).toEqual({
      authorization: "Bearer sk-bench-not-a-real-key",
      "x-portkey-provider": "openai",
      "x-portkey-custom-host": "http://127.0.0.1:4321/v1",
    });
    // The caller's JWT is the server's business only.
    expect(JSON.stringify(peer)).not.toContain("t0ken");
  });

  it("the slow scenario points the peer at the mock's delayed base URL", () => {
    const peer = requestFor("peer", scenario("slow-512"), context);
    expect(peer.headers["x-portkey-custom-host"]).toBe("http://127.0.0.1:4321/delay/100/v1");
  });

  it("sse-1000 asks the server's bench-sse product to stream, and the floor the mock's chunked path", () => {
    const server = requestFor("server", scenario("sse-1000"), context);
    expect(server.path).toBe("/v1/chat/bench-sse:stream");
    expect(JSON.parse(Buffer.from(server.body).toString())).toMatchObject({ stream: true });
    const floor = requestFor("floor", scenario("sse-1000"), context);
    expect(floor.path).toBe("/chunks/20/delay/2000/v1/chat/completions");
    expect(JSON.parse(Buffer.from(floor.body).toString())).toMatchObject({ stream: true });
  });

  it("a peer request without the peer's context is refused", () => {
    expect(() => requestFor("peer", scenario("rest-1"), { ...context, peer: undefined })).toThrow(
      "a peer request needs the peer's context",
    );
  });
});

describe("pre-flight call against the real mock provider", () => {
  let mock: ChildProcess;
  let port: number;
  beforeAll(async () => {
    mock = fork(path.join(BENCH_DIR, "lib", "mock-provider.mjs"), [], {
      stdio: ["ignore", "ignore", "inherit", "ipc"],
    });
    const [message] = (await once(mock, "message")) as [{ port: number }];
    port = message.port;
  });
  afterAll(() => {
    mock.kill();
  });

  it("passes on the mock's answer (the floor's request, sent straight to the mock)", async () => {
    const request = requestFor("floor", scenario("rest-1"), { token: "x", pb: undefined, peer: undefined });
    expect(await preflight(port, scenario("rest-1"), request)).toEqual({ ok: true });
  });

  it("fails on a status other than 200, with the status and body", async () => {
    const check = await preflight(port, scenario("rest-1"), {
      path: "/status/503/x",
      body: new Uint8Array(),
      headers: {},
    });
    expect(check).toEqual({ ok: false, why: expect.stringContaining("HTTP 503") as unknown });
  });

  it("fails on a 200 that is not the mock's answer", async () => {
    // The mock's /status/<code>/ prefix answers that status with an OpenAI error body.
    const check = await preflight(port, scenario("rest-1"), {
      path: "/status/200/v1/chat/completions",
      body: new Uint8Array(),
      headers: {},
    });
    expect(check).toEqual({ ok: false, why: expect.stringContaining("unexpected answer") as unknown });
  });

  it("fails a stream scenario answered with plain JSON", async () => {
    const request = requestFor("floor", scenario("rest-1"), { token: "x", pb: undefined, peer: undefined });
    const check = await preflight(port, scenario("stream-512"), request);
    expect(check).toEqual({ ok: false, why: expect.stringContaining("not an event stream") as unknown });
  });

  it("fails when nothing listens, without throwing", async () => {
    const check = await preflight(1, scenario("rest-1"), { path: "/", body: new Uint8Array(), headers: {} });
    expect(check).toEqual({ ok: false, why: expect.stringContaining("fetch failed") as unknown });
  });

  it("fails a gRPC call that gets no gRPC answer, without throwing", async () => {
    const check = await preflight(port, scenario("grpc-1"), {
      path: CHAT_PATH,
      body: new Uint8Array(5),
      headers: {},
    });
    expect(check.ok).toBe(false);
  });

  it("passes an sse-1000 stream with its 20 chunks and [DONE] (the floor's request, straight to the mock)", async () => {
    const request = requestFor("floor", scenario("sse-1000"), { token: "x", pb: undefined, peer: undefined });
    expect(await preflight(port, scenario("sse-1000"), request)).toEqual({ ok: true });
  });

  it("fails an sse-1000 stream with fewer chunks than 20", async () => {
    const request = requestFor("floor", scenario("sse-1000"), { token: "x", pb: undefined, peer: undefined });
    const check = await preflight(port, scenario("sse-1000"), {
      ...request,
      path: "/chunks/19/v1/chat/completions",
    });
    expect(check).toEqual({ ok: false, why: expect.stringContaining("not 20 content chunks") as unknown });
  });

  it("the expected answer is the mock's", () => {
    expect(EXPECTED_ANSWER).toBe("Hello! How can I help you today?");
  });
});

describe("peer install cache", () => {
  let cache: string;
  beforeAll(async () => {
    cache = await mkdtemp(path.join(os.tmpdir(), "bench-peer-cache-"));
  });
  afterAll(async () => {
    await rm(cache, { recursive: true, force: true });
  });

  it("reuses an installed copy of the pinned version without calling npm", async () => {
    const packageDir = path.join(
      cache,
      "portkey-ai-gateway-1.15.2",
      "node_modules",
      "@portkey-ai",
      "gateway",
    );
    await mkdir(packageDir, { recursive: true });
    await writeFile(path.join(packageDir, "package.json"), JSON.stringify({ version: "1.15.2" }));
    const peer = await installPeer(PEERS.portkey, cache);
    expect(peer).toMatchObject({ packageDir, installed: false });
  });

  it("a failed install says why and leaves no partial folder behind", async () => {
    // An invalid package name: npm refuses it without asking a registry.
    const spec = { ...PEERS.portkey, package: "Not A Valid Name", version: "1.0.0" };
    await expect(installPeer(spec, cache)).rejects.toThrow(/npm install Not A Valid Name@1\.0\.0 failed/);
    expect((await readdir(cache)).filter((f) => f.includes(".partial-"))).toEqual([]);
    expect(existsSync(path.join(cache, "Not A Valid Name-1.0.0"))).toBe(false);
  });
});

describe("report", () => {
  const runOf = (rps: number, p50Ms: number): RunRecord => ({
    rps,
    p50Ms,
    p99Ms: p50Ms * 2,
    requests: rps * 5,
    errors: 0,
    errorDetail: "",
    rss: 100 * 2 ** 20,
    cpuUs: 1_000_000 / rps,
  });
  const rest32 = scenario("rest-32");
  // Three rounds; the host got slower in round 2 for everyone, which pairing by round cancels out.
  const results: Results = new Map([
    ["floor:rest-32", [runOf(4000, 5), runOf(2000, 10), runOf(4000, 5)]],
    ["server:rest-32", [runOf(2400, 8), runOf(1200, 16), runOf(2400, 8)]],
    ["peer:rest-32", [runOf(400, 50), runOf(200, 100), runOf(400, 50)]],
  ]);

  it("pairs each target with the floor by round, then takes the median", () => {
    expect(paired(results, rest32, "server")).toEqual({ ratio: 0.6, addedP50Ms: 3 });
    expect(paired(results, rest32, "peer")).toEqual({ ratio: 0.1, addedP50Ms: 45 });
  });

  it("the peer table gives peer/floor and server/peer for the peer's scenarios only", () => {
    const text = peerTable([scenario("rest-1"), rest32], results);
    const rows = text.split("\n").slice(2);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatch(/^\| REST unary, 32 conns \| 4,000 \| 2,400 \| 400 \| 60% \| 10% \| 6\.00× \|/);
  });

  it("the report names the peer, its version and how it ran, and has no peer table without one", () => {
    const input = {
      plan: [rest32],
      results,
      skipped: new Map<string, string>(),
      failures: [],
      rounds: 3,
      duration: 5,
      warmup: 2,
      nice: undefined,
      pinned: undefined,
      memory: "each in a 512 MiB memory cgroup",
      serverNodeOptions: "--max-semi-space-size=8",
      scraped: undefined,
      compared: false,
      peer: { ...PEERS.portkey, peakRssMb: 150 },
      loadBefore: 1,
      loadAfter: 1,
      machine: "test",
      command: "npm run bench -- --peer portkey",
      serverPeakRssMb: 120,
      profile: undefined,
    };
    const withPeer = renderReport(input);
    expect(withPeer).toContain("`@portkey-ai/gateway@1.15.2`");
    expect(withPeer).toContain("node build/start-server.js --port=<port> --headless");
    expect(withPeer).toContain("Peer peak RSS (VmHWM) over the run: 150 MB.");
    expect(withPeer).toContain("| peer req/s |");
    const without = renderReport({ ...input, peer: undefined });
    expect(without).not.toContain("Peer");
    expect(without).not.toContain("| peer req/s |");
  });
});

describe("SSE driver", () => {
  let mock: ChildProcess;
  let mockPort: number;
  /** A stand-in provider for what the mock never does: no [DONE], a long pause, an error event. */
  let odd: http.Server;
  let oddPort: number;
  beforeAll(async () => {
    mock = fork(path.join(BENCH_DIR, "lib", "mock-provider.mjs"), [], {
      stdio: ["ignore", "ignore", "inherit", "ipc"],
    });
    const [message] = (await once(mock, "message")) as [{ port: number }];
    mockPort = message.port;
    odd = http.createServer((req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      const data = (content: string): string =>
        `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content } }] })}\n\n`;
      res.write(data("one"));
      if (req.url === "/error") {
        res.end(`event: error\ndata: {"error":{"message":"upstream failed"}}\n\n`);
        return;
      }
      // /pause: the second chunk 300 ms after the first, then the stream ends without [DONE].
      setTimeout(() => res.end(data("two")), 300);
    });
    odd.listen(0, "127.0.0.1");
    await once(odd, "listening");
    oddPort = (odd.address() as { port: number }).port;
  });
  afterAll(() => {
    mock.kill();
    odd.close();
  });

  const config = (over: Partial<SseLoadConfig>): SseLoadConfig => ({
    port: mockPort,
    path: "/chunks/5/delay/200/v1/chat/completions",
    body: JSON.stringify({ model: "gpt-4o-mini", messages: [], stream: true }),
    headers: {},
    streams: 3,
    expectedChunks: 5,
    timeoutMs: 10_000,
    ...over,
  });

  it("in its own process, reads every stream of the mock to [DONE] and counts its chunks", async () => {
    const stats = await sseWave(config({}));
    expect(stats).toMatchObject({ streams: 3, completed: 3, errors: 0, missingChunks: 0, noDone: 0 });
    expect(stats.maxGapMs).toBeGreaterThan(0);
  });

  it("the mock's /delay/ and /chunks/ prefixes combine in either order", async () => {
    const stats = await sseWave(config({ path: "/delay/200/chunks/5/v1/chat/completions" }));
    expect(stats).toMatchObject({ completed: 3, errors: 0 });
  });

  it("counts a stream with fewer chunks than expected as an error", async () => {
    const stats = await sseWave(config({ expectedChunks: 6 }));
    expect(stats).toMatchObject({ completed: 0, errors: 3, missingChunks: 3, noDone: 0 });
  });

  it("counts a status other than 200 as an error", async () => {
    const stats = await sseWave(config({ path: "/status/503/v1/chat/completions", streams: 2 }));
    expect(stats).toMatchObject({ completed: 0, errors: 2, non200: 2 });
  });

  it("detects a stream that ends without [DONE] and the pause between its chunks", async () => {
    const { stats, outcomes } = await runSseWave(
      config({ port: oddPort, path: "/pause", streams: 2, expectedChunks: 2 }),
    );
    expect(stats).toMatchObject({ completed: 0, errors: 2, noDone: 2, missingChunks: 0, socketErrors: 0 });
    expect(outcomes[0]).toMatchObject({ status: 200, contentChunks: 2, done: false });
    // A lower bound only: the timer cannot fire before 300 ms.
    expect(stats.maxGapMs).toBeGreaterThanOrEqual(250);
  });

  it("detects an error event", async () => {
    const { stats } = await runSseWave(
      config({ port: oddPort, path: "/error", streams: 1, expectedChunks: 1 }),
    );
    expect(stats).toMatchObject({ completed: 0, errors: 1, errorEvents: 1, noDone: 1 });
  });

  it("counts a refused connection as a socket error", async () => {
    const { stats, outcomes } = await runSseWave(config({ port: 1, streams: 1 }));
    expect(stats).toMatchObject({ completed: 0, errors: 1, socketErrors: 1, non200: 1 });
    expect(outcomes[0]?.socketError).toMatch(/ECONNREFUSED/);
  });

  it("cuts a stream still open at the timeout", async () => {
    const { stats, outcomes } = await runSseWave(
      config({ path: "/chunks/5/delay/5000/v1/chat/completions", streams: 1, timeoutMs: 300 }),
    );
    expect(stats).toMatchObject({ completed: 0, socketErrors: 1 });
    expect(outcomes[0]?.socketError).toBe("timeout");
  });

  it("in its own process, refuses to start without a config", async () => {
    const result = await exec(process.execPath, [path.join(BENCH_DIR, "lib", "sse-load.ts")]).catch(
      (error: unknown) => error as { code: number; stderr: string },
    );
    expect(result).toMatchObject({ code: 2, stderr: expect.stringContaining("BENCH_SSE_CONFIG") as unknown });
  });
});

describe("verdicts (issue 17's targets)", () => {
  const runOf = (rps: number, p50Ms: number, extra: Partial<RunRecord> = {}): RunRecord => ({
    rps,
    p50Ms,
    p99Ms: p50Ms * 2,
    requests: rps * 5,
    errors: 0,
    errorDetail: "",
    rss: 100 * 2 ** 20,
    cpuUs: 1_000_000 / rps,
    ...extra,
  });
  const wave = (over: Partial<SseStats> = {}): SseStats => ({
    streams: 1000,
    completed: 1000,
    errors: 0,
    non200: 0,
    missingChunks: 0,
    noDone: 0,
    errorEvents: 0,
    socketErrors: 0,
    maxGapMs: 180,
    p99GapMs: 120,
    p50DurationMs: 2100,
    p99DurationMs: 2300,
    wallMs: 2400,
    ...over,
  });
  const plan = ["rest-1", "rest-32", "connect-32", "grpc-32", "grpc-1x32", "slow-512", "sse-1000"].map(
    scenario,
  );
  /** Each list is three rounds; the server's rows as a share of the floor's (or of the server's REST). */
  const fabricate = (share: {
    rest32: number;
    connect: number;
    grpc: number;
    slow: number;
    slowRssMb: number;
    addedP50Ms: number;
    sse: Partial<SseStats>;
    ssePeakRss: number | undefined;
  }): Results => {
    const rounds = [1, 0.5, 1]; // round 2 ran on a busier host, for floor and server alike
    const rest = rounds.map((r) => 5000 * r * share.rest32);
    const peak = share.ssePeakRss === undefined ? {} : { peakRss: share.ssePeakRss * 2 ** 20 };
    return new Map([
      ["floor:rest-1", rounds.map((r) => runOf(800 * r, 1 / r))],
      ["server:rest-1", rounds.map((r) => runOf(600 * r, 1 / r + share.addedP50Ms))],
      ["floor:rest-32", rounds.map((r) => runOf(5000 * r, 6))],
      ["server:rest-32", rest.map((rps) => runOf(rps, 8))],
      ["server:connect-32", rest.map((rps) => runOf(rps * share.connect, 8))],
      ["server:grpc-32", rest.map((rps) => runOf(rps * share.grpc, 8))],
      ["server:grpc-1x32", rest.map((rps) => runOf(rps * 1.2, 8))],
      ["floor:slow-512", rounds.map((r) => runOf(4000 * r, 110))],
      [
        "server:slow-512",
        rounds.map((r) => runOf(4000 * r * share.slow, 115, { rss: share.slowRssMb * 2 ** 20 })),
      ],
      ["floor:sse-1000", rounds.map(() => runOf(400, 2100, { sse: wave(), peakRss: 90 * 2 ** 20 }))],
      [
        "server:sse-1000",
        rounds.map((_, i) => runOf(390, 2150, { sse: wave(i === 1 ? share.sse : {}), ...peak })),
      ],
    ]);
  };
  const lines = (text: string): string[] => text.split("\n");

  it("passes every target that is met, paired by round", () => {
    const text = verdicts(
      plan,
      fabricate({
        rest32: 0.62,
        connect: 0.95,
        grpc: 0.91,
        slow: 0.85,
        slowRssMb: 150,
        addedP50Ms: 0.2,
        sse: {},
        ssePeakRss: 140,
      }),
    );
    expect(lines(text)).toEqual([
      "- PASS REST 32 conns ≥ 60% of the floor's req/s: 62%",
      "- PASS Connect JSON (connect-32) ≥ 90% of REST (rest-32) req/s: 95% of REST (2,945 vs 3,100 req/s)",
      "- PASS gRPC one stream per connection (grpc-32) ≥ 90% of REST (rest-32) req/s: 91% of REST (2,821 vs 3,100 req/s)",
      "- info gRPC 1 conn × 32 streams (grpc-1x32, reported; the target is grpc-32's): 120% of REST (3,720 vs 3,100 req/s)",
      "- PASS 512 slow calls ≥ 80% of the floor's req/s, 0 errors, RSS < 200 MB: 85%, 0 errors, 150 MB",
      "- PASS REST 1 conn added p50 ≤ 0.3 ms: 0.200 ms",
      "- PASS 1000 concurrent SSE streams of 20 chunks: 0 errors, no gap over 1 s, peak RSS reported: 3000/3000 streams completed, 0 errors (non-200 0, missing chunks 0, no [DONE] 0, error events 0, socket errors 0), max gap 180.0 ms, p99 gap 120.0 ms, peak RSS 140 MB",
    ]);
  });

  it("misses each target that is not met", () => {
    const text = verdicts(
      plan,
      fabricate({
        rest32: 0.5,
        connect: 0.8,
        grpc: 0.85,
        slow: 0.75,
        slowRssMb: 210,
        addedP50Ms: 0.4,
        sse: { maxGapMs: 1200 },
        ssePeakRss: 140,
      }),
    );
    const misses = lines(text).filter((l) => l.startsWith("- MISS"));
    expect(misses).toHaveLength(6);
    expect(text).toContain("- MISS REST 32 conns ≥ 60% of the floor's req/s: 50%");
    expect(text).toContain("- MISS REST 1 conn added p50 ≤ 0.3 ms: 0.400 ms");
    expect(text).toContain("75%, 0 errors, 210 MB");
    expect(text).toContain("max gap 1200.0 ms");
  });

  it("misses the SSE target on one failed stream, and when no peak RSS was sampled", () => {
    const oneError = fabricate({
      rest32: 0.62,
      connect: 0.95,
      grpc: 0.95,
      slow: 0.85,
      slowRssMb: 150,
      addedP50Ms: 0.2,
      sse: { completed: 999, errors: 1, noDone: 1 },
      ssePeakRss: 140,
    });
    const sseLine = (results: Results): string | undefined =>
      lines(verdicts([scenario("sse-1000")], results)).find((l) => l.includes("SSE"));
    expect(sseLine(oneError)).toMatch(/^- MISS .*2999\/3000 streams completed, 1 errors \(.*no \[DONE\] 1/);
    const noPeak = fabricate({
      rest32: 0.62,
      connect: 0.95,
      grpc: 0.95,
      slow: 0.85,
      slowRssMb: 150,
      addedP50Ms: 0.2,
      sse: {},
      ssePeakRss: undefined,
    });
    expect(sseLine(noPeak)).toMatch(/^- MISS .*peak RSS – MB$/);
  });
});
