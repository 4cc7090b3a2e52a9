// The benchmark's own pieces (bench/README.md, "Code"): its command line, the requests each target gets
// (the gRPC body from the generated code, the peer's headers), the checked pre-flight call against the
// real mock, the peer's install cache and the report's paired ratios. No timing is asserted here; the
// bench smoke in .ci/run runs the whole harness.
import { execFile, fork } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
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
import { paired, peerTable, renderReport } from "../lib/report.ts";
import { CHAT_PATH, EXPECTED_ANSWER, requestFor } from "../lib/requests.ts";
import { scenarios } from "../lib/scenarios.ts";

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
