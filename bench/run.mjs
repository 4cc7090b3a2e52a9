// The benchmark (issue 6): the proxy against a floor, in the same run, on loopback.
//
// Processes: a mock OpenAI provider, a raw forwarder (the floor: a Node hop that pipes bytes and does
// nothing else) and the real server from dist/ with production settings (JWT auth, memory rate limiter
// with limits that never trigger, access log at info written to /dev/null). wrk drives HTTP/1.1 and
// h2load drives gRPC over h2c. Each scenario runs on the floor and on the server back to back, for
// several rounds; the table shows medians and the proxy/floor ratio. See bench/README.md.
/* global fetch, AbortSignal */
import { Buffer } from "node:buffer";
import { fork, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, openSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import http2 from "node:http2";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { clearInterval, clearTimeout, setInterval, setTimeout } from "node:timers";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import {
  encodeChatRequest,
  freePort,
  grpcFrame,
  inCgroup,
  joinCgroup,
  memoryCgroup,
  productionNodeOptions,
  removeCgroups,
} from "./lib/harness.mjs";
import { formatProfileSummary, summariseProfile } from "./lib/profile-summary.mjs";

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);
const SERVER_ENTRY = path.join(ROOT, "dist", "src", "main.js");
const OUT_DIR = path.join(BENCH_DIR, "out");
const SLOW_DELAY_MS = 100;
const EXPECTED_ANSWER = "Hello! How can I help you today?";

const USAGE = `usage: npm run bench -- [options]
  --smoke               one short round of every scenario (CI); exit 0 only if all ran without errors
  --rounds <n>          measured rounds (default 3)
  --duration <s>        seconds per measured run (default 5)
  --warmup <s>          seconds of unmeasured load per target and scenario before round 1 (default 2)
  --slow-connections <n> concurrent calls in the slow-provider scenarios (default 512)
  --only <ids>          comma-separated scenario ids (${"rest-1,rest-32,connect-1,connect-32,grpc-1,grpc-32,grpc-1x32,slow-512,stream-512"})
  --floor-only          measure the mock and raw forwarder only (no dist/ server needed)
  --cpu-prof            run the server under --cpu-prof and summarise the profile (bench/out/profiles)
  --log-level <level>   server API_KEY_SERVER_LOG_LEVEL (default info; stdout goes to /dev/null)
  --server-log <file>   write the server's stdout there instead of /dev/null (debugging)
  --server-env <K=V>    extra environment for the server (repeatable)
  --server-entry <file> the server's entry file (default dist/src/main.js)
  --server-node-arg <a> extra Node option for the server process (repeatable), for flags NODE_OPTIONS refuses,
                        e.g. --server-node-arg=--trace-gc with --server-log <file> (each line names the pid)
  --metrics <mode>      on (default): the server records metrics (API_KEY_SERVER_METRICS_PORT set) and the harness
                        scrapes them every 5 s during the run; off: no metrics; compare: a second server without
                        metrics runs every server scenario too, in the same rounds (alternating which goes first),
                        and a table gives the metrics' CPU cost per request
  --pin <on|off>        on (with 2+ CPUs and taskset): the floor and the server run alone on the last CPU, the mock,
                        the load tools and the harness on the others; the ratio is then the floor's CPU per request
                        over the server's. off (default, as the targets were set): all share the CPUs
  --memory-limit <MiB>  run the server and the floor in a memory cgroup of this size (default 512, Cloud Run's
                        default instance, whose limit Node sizes its heap by); 0: unconstrained. Needs root and a
                        writable cgroup memory controller, else the run says it was unconstrained
  --nice=<n>            run the harness and every process it starts at this nice value (e.g. --nice=-10, needs
                        root): on a shared host it keeps other work from skewing the numbers
  --out <file>          also write the markdown report there (default bench/out/last-run.md)`;

// ---------------------------------------------------------------------------------------------
// Options

function readOptions() {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        smoke: { type: "boolean", default: false },
        rounds: { type: "string" },
        duration: { type: "string" },
        warmup: { type: "string" },
        "slow-connections": { type: "string" },
        only: { type: "string" },
        "floor-only": { type: "boolean", default: false },
        "cpu-prof": { type: "boolean", default: false },
        "log-level": { type: "string", default: "info" },
        "server-log": { type: "string" },
        "server-env": { type: "string", multiple: true, default: [] },
        "server-entry": { type: "string", default: SERVER_ENTRY },
        "server-node-arg": { type: "string", multiple: true, default: [] },
        metrics: { type: "string", default: "on" },
        "memory-limit": { type: "string", default: "512" },
        pin: { type: "string", default: "off" },
        out: { type: "string", default: path.join(OUT_DIR, "last-run.md") },
        nice: { type: "string" },
        help: { type: "boolean", default: false },
      },
      strict: true,
    });
  } catch (error) {
    fail(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
  }
  const { values } = parsed;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const positive = (name, raw, fallback) => {
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || n <= 0) fail(`--${name} must be a positive number, got "${raw}"`);
    return n;
  };
  const smoke = values.smoke;
  const serverEnv = {};
  for (const pair of values["server-env"]) {
    const eq = pair.indexOf("=");
    if (eq <= 0) fail(`--server-env takes KEY=VALUE, got "${pair}"`);
    serverEnv[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return {
    smoke,
    rounds: Math.round(positive("rounds", values.rounds, smoke ? 1 : 3)),
    duration: Math.round(positive("duration", values.duration, smoke ? 1 : 5)),
    warmup: values.warmup === "0" ? 0 : Math.round(positive("warmup", values.warmup, smoke ? 0 : 2)),
    // Smoke proves the script works, not capacity: 512 connections in a 1 s run mostly measure connect time.
    slowConnections: Math.round(positive("slow-connections", values["slow-connections"], smoke ? 64 : 512)),
    only: values.only === undefined ? undefined : new Set(values.only.split(",").map((s) => s.trim())),
    floorOnly: values["floor-only"],
    cpuProf: values["cpu-prof"],
    logLevel: values["log-level"],
    serverNodeArgs: values["server-node-arg"],
    serverLog: values["server-log"],
    serverEnv,
    serverEntry: path.resolve(values["server-entry"]),
    metrics: ["on", "off", "compare"].includes(values.metrics)
      ? values.metrics
      : fail(`--metrics takes on, off or compare, got "${values.metrics}"`),
    pin:
      values.pin === "on"
        ? true
        : values.pin === "off"
          ? false
          : fail(`--pin takes on or off, got "${values.pin}"`),
    memoryLimitMib:
      values["memory-limit"] === "0" ? 0 : Math.round(positive("memory-limit", values["memory-limit"], 512)),
    out: values.out,
    nice: values.nice === undefined ? undefined : Number(values.nice),
  };
}

function fail(message) {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(1);
}

function log(message) {
  process.stderr.write(`${message}\n`);
}

// ---------------------------------------------------------------------------------------------
// Scenarios. `floor` names the floor run a server run is compared with; only REST-shaped scenarios
// have their own floor run (the raw forwarder speaks plain HTTP/1.1), so Connect and gRPC are compared
// with the REST floor at the same concurrency.

function scenarios(options) {
  const slow = options.slowConnections;
  return [
    { id: "rest-1", title: "REST unary, 1 conn", api: "rest", connections: 1, delayMs: 0, floor: "rest-1" },
    {
      id: "rest-32",
      title: "REST unary, 32 conns",
      api: "rest",
      connections: 32,
      delayMs: 0,
      floor: "rest-32",
    },
    {
      id: "connect-1",
      title: "Connect JSON, 1 conn",
      api: "connect",
      connections: 1,
      delayMs: 0,
      floor: "rest-1",
    },
    {
      id: "connect-32",
      title: "Connect JSON, 32 conns",
      api: "connect",
      connections: 32,
      delayMs: 0,
      floor: "rest-32",
    },
    { id: "grpc-1", title: "gRPC h2c, 1 conn", api: "grpc", connections: 1, delayMs: 0, floor: "rest-1" },
    {
      id: "grpc-32",
      title: "gRPC h2c, 32 conns",
      api: "grpc",
      connections: 32,
      delayMs: 0,
      floor: "rest-32",
    },
    {
      // How gRPC clients (grpc-js, grpc-go) really call: one HTTP/2 connection, many concurrent streams.
      id: "grpc-1x32",
      title: "gRPC h2c, 1 conn × 32 streams",
      api: "grpc",
      connections: 1,
      streams: 32,
      delayMs: 0,
      floor: "rest-32",
    },
    {
      id: `slow-${slow}`,
      key: "slow-512",
      title: `REST, ${slow} calls, provider +${SLOW_DELAY_MS} ms`,
      api: "rest",
      connections: slow,
      delayMs: SLOW_DELAY_MS,
      floor: `slow-${slow}`,
    },
    {
      id: `stream-${slow}`,
      key: "stream-512",
      title: `REST SSE, ${slow} streams, ${SLOW_DELAY_MS} ms each`,
      api: "rest-stream",
      connections: slow,
      delayMs: SLOW_DELAY_MS,
      floor: `stream-${slow}`,
      // Streaming is optional in the server's history: the scenario is skipped (and said so) when the
      // route does not answer with an event stream yet.
      optional: true,
    },
  ].filter((s) => options.only === undefined || options.only.has(s.id) || options.only.has(s.key ?? s.id));
}

const MESSAGES = [{ role: "user", content: "Hello" }];
/** The same messages in Connect JSON: protobuf's canonical form, where `content` is the typed `text` member. */
const CONNECT_MESSAGES = [{ role: "user", text: "Hello" }];

/** The request a target receives for a scenario: URL path, body bytes, extra headers. */
function requestFor(target, scenario, token) {
  const auth = `Bearer ${token}`;
  const delayPrefix = scenario.delayMs > 0 ? `/delay/${scenario.delayMs}` : "";
  const product = scenario.delayMs > 0 ? "bench-slow" : "bench";
  const json = (value) => Buffer.from(JSON.stringify(value));
  if (target === "floor") {
    const body = { model: "gpt-4o-mini", messages: MESSAGES };
    if (scenario.api === "rest-stream") body.stream = true;
    return { path: `${delayPrefix}/v1/chat/completions`, body: json(body), headers: { authorization: auth } };
  }
  switch (scenario.api) {
    case "rest":
      return {
        path: `/v1/chat/${product}`,
        body: json({ model: "gpt-4o-mini", messages: MESSAGES }),
        headers: { authorization: auth },
      };
    case "rest-stream":
      return {
        path: `/v1/chat/${product}:stream`,
        body: json({ model: "gpt-4o-mini", messages: MESSAGES }),
        headers: { authorization: auth },
      };
    case "connect":
      return {
        path: "/apikeyserver.v1.ChatService/CreateChatCompletion",
        body: json({ product, model: "gpt-4o-mini", messages: CONNECT_MESSAGES }),
        headers: { authorization: auth, "connect-protocol-version": "1" },
      };
    case "grpc":
      return {
        path: "/apikeyserver.v1.ChatService/CreateChatCompletion",
        body: grpcFrame(encodeChatRequest(product, "gpt-4o-mini", "user", "Hello")),
        headers: { authorization: auth, "content-type": "application/grpc", te: "trailers" },
      };
    default:
      throw new Error(`unknown api ${scenario.api}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Processes

const children = new Set();

/** CPU sets for --pin: the process under test alone on the last CPU, everything else on the others. */
const cpuCount = os.cpus().length;
const pinning = {
  enabled: false,
  testCpu: String(cpuCount - 1),
  otherCpus: cpuCount > 2 ? `0-${cpuCount - 2}` : "0",
};

/** Pins every thread of a running process to `cpus` (no-op when pinning is off). */
async function pin(pid, cpus) {
  if (!pinning.enabled) return;
  const result = await run("taskset", ["-a", "-p", "-c", cpus, String(pid)], {});
  if (result.code !== 0) throw new Error(`taskset failed for pid ${pid}: ${result.stderr}`);
}

/** The command and arguments of a load tool, pinned to the load CPUs when pinning is on. */
function loadCommand(command, args) {
  return pinning.enabled ? ["taskset", ["-c", pinning.otherCpus, command, ...args]] : [command, args];
}

async function forkHelper(file, args, procs) {
  // In a cgroup: sh joins it, then execs Node (with the IPC channel fork() set up) and the helper.
  const child = fork(path.join(BENCH_DIR, "lib", file), args, {
    stdio: ["ignore", "ignore", "inherit", "ipc"],
    ...(procs === undefined
      ? {}
      : { execPath: "/bin/sh", execArgv: [...joinCgroup(procs), process.execPath] }),
  });
  children.add(child);
  const [message] = await Promise.race([
    once(child, "message"),
    once(child, "exit").then(([code]) => {
      throw new Error(`${file} exited with code ${code} before it was ready`);
    }),
  ]);
  return { child, port: message.port };
}

async function writeServerConfig(dir, mockPort) {
  const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: "bench", alg: "ES256", use: "sig" };
  const provider = (base) => ({
    providers: { openai: { api_key: "sk-bench-not-a-real-key", base_url: base, models: ["gpt-4o-mini"] } },
    rate_limit: { requests_per_minute: 100_000_000 },
  });
  const products = {
    bench: provider(`http://127.0.0.1:${mockPort}/v1`),
    "bench-slow": provider(`http://127.0.0.1:${mockPort}/delay/${SLOW_DELAY_MS}/v1`),
  };
  await writeFile(path.join(dir, "openai_api_keys.json"), JSON.stringify(products, null, 2));
  await writeFile(path.join(dir, "jwt_public_keys.json"), JSON.stringify({ keys: [jwk] }, null, 2));
  return new SignJWT({ products: ["bench", "bench-slow"] })
    .setProtectedHeader({ alg: "ES256", kid: "bench" })
    .setSubject("bench")
    .setIssuedAt()
    .setExpirationTime("2h")
    .sign(privateKey);
}

async function startServer(options, configDir, procs, { metrics }) {
  const port = await freePort();
  const metricsPort = metrics ? await freePort() : undefined;
  const profileDir = path.join(OUT_DIR, "profiles");
  if (options.cpuProf) await mkdir(profileDir, { recursive: true });
  const env = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? os.tmpdir(),
    NODE_ENV: "production",
    PORT: String(port),
    API_KEY_SERVER_HOST: "127.0.0.1",
    USE_SECRET_MANAGER: "false",
    API_KEY_SERVER_CONFIG_DIR: configDir,
    API_KEY_SERVER_LOG_LEVEL: options.logLevel,
    API_KEY_SERVER_RATE_LIMIT_REQUESTS_PER_MINUTE: "100000000",
    NODE_OPTIONS: await productionNodeOptions(),
    ...(metricsPort === undefined ? {} : { API_KEY_SERVER_METRICS_PORT: String(metricsPort) }),
    ...options.serverEnv,
  };
  const nodeArgs = [
    ...(options.cpuProf ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : []),
    ...options.serverNodeArgs,
  ];
  const stdout = options.serverLog === undefined ? "ignore" : openForAppend(options.serverLog);
  const [command, ...args] = inCgroup(procs, [process.execPath, ...nodeArgs, options.serverEntry]);
  const child = spawn(command, args, {
    env,
    stdio: ["ignore", stdout, "pipe"],
  });
  children.add(child);
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (text) => {
    stderr = (stderr + text).slice(-4000);
  });
  let exited = false;
  child.once("exit", () => {
    exited = true;
  });
  const describeExit = () =>
    `the server exited (code ${child.exitCode}, signal ${child.signalCode})` +
    (stderr === "" ? "" : `; stderr:\n${stderr}`);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) {
      throw new Error(
        `the server exited with code ${child.exitCode} before /health answered 200` +
          (stderr === "" ? " (run with --server-log <file> to see its log)" : `; stderr:\n${stderr}`),
      );
    }
    try {
      const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error("the server did not answer GET /health with 200 within 30 s");
    await sleep(100);
  }
  return { child, port, metricsPort, profileDir, describeExit, nodeOptions: env.NODE_OPTIONS };
}

function openForAppend(file) {
  // A plain fd (not a FileHandle) because spawn's stdio takes a descriptor; the child keeps it open.
  return openSync(file, "a");
}

async function stopChild(child, timeoutMs = 15_000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  await exited;
  clearTimeout(timer);
  children.delete(child);
}

/** CPU time (user + system) a process has used so far, in ms (Linux clock ticks of 10 ms). */
async function cpuMs(pid) {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which is in parentheses and may hold spaces: utime and stime are 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

async function rssBytes(pid) {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

// ---------------------------------------------------------------------------------------------
// Pre-flight: one real call per target and scenario, checked for the right answer, because the
// load tools count only transport errors and HTTP statuses (a gRPC failure is HTTP 200).

async function preflight(port, scenario, request) {
  if (scenario.api === "grpc") return grpcCall(port, request);
  const res = await fetch(`http://127.0.0.1:${port}${request.path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...request.headers },
    body: request.body,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (res.status !== 200) return { ok: false, why: `HTTP ${res.status}: ${text.slice(0, 200)}` };
  if (scenario.api === "rest-stream") {
    const type = res.headers.get("content-type") ?? "";
    const ok = type.startsWith("text/event-stream") && text.includes("help");
    return ok ? { ok: true } : { ok: false, why: `not an event stream with the answer (${type})` };
  }
  try {
    const content = JSON.parse(text).choices?.[0]?.message?.content;
    return content === EXPECTED_ANSWER
      ? { ok: true }
      : { ok: false, why: `unexpected answer: ${text.slice(0, 200)}` };
  } catch {
    return { ok: false, why: `not JSON: ${text.slice(0, 200)}` };
  }
}

async function grpcCall(port, request) {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    session.on("error", () => {});
    const stream = session.request({ ":method": "POST", ":path": request.path, ...request.headers });
    stream.end(request.body);
    const chunks = [];
    let status = "";
    let trailers = {};
    stream.on("response", (headers) => {
      status = String(headers[":status"]);
      trailers = headers;
    });
    stream.on("trailers", (t) => {
      trailers = { ...trailers, ...t };
    });
    stream.on("data", (c) => chunks.push(c));
    await Promise.race([
      once(stream, "end"),
      sleep(10_000).then(() => Promise.reject(new Error("gRPC call timed out"))),
    ]);
    const body = Buffer.concat(chunks);
    const grpcStatus = String(trailers["grpc-status"] ?? "");
    if (status !== "200" || grpcStatus !== "0") {
      return {
        ok: false,
        why: `HTTP ${status}, grpc-status ${grpcStatus || "(none)"}: ${String(trailers["grpc-message"] ?? "")}`,
      };
    }
    if (!body.includes(EXPECTED_ANSWER))
      return { ok: false, why: "gRPC answer does not carry the expected content" };
    return { ok: true, responseBytes: body.length };
  } finally {
    session.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Load generators

function run(command, args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (t) => (stdout += t));
    child.stderr.setEncoding("utf8").on("data", (t) => (stderr += t));
    child.on("error", reject);
    child.on("exit", (code) => {
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

async function wrk(port, request, connections, seconds, scratch) {
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
  const result = await run(...loadCommand("wrk", [...args, `http://127.0.0.1:${port}${request.path}`]), env);
  const line = /^BENCH_RESULT (\{.*\})$/m.exec(result.stdout);
  if (result.code !== 0 || line === null)
    throw new Error(`wrk failed (${result.code}): ${result.stderr}${result.stdout}`);
  const r = JSON.parse(line[1]);
  return {
    rps: r.requests / (r.duration_us / 1e6),
    p50Ms: r.p50_us / 1000,
    p99Ms: r.p99_us / 1000,
    requests: r.requests,
    errors: r.connect + r.read + r.write + r.status + r.timeout,
    errorDetail: `connect ${r.connect}, read ${r.read}, write ${r.write}, status ${r.status}, timeout ${r.timeout}`,
  };
}

async function h2load(port, request, connections, streams, seconds, scratch, expectedResponseBytes) {
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
  const result = await run(
    ...loadCommand("h2load", [...args, `http://127.0.0.1:${port}${request.path}`]),
    {},
  );
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
  const seconds_ = Number(finished[1]) / (finished[2] === "ms" ? 1000 : 1);
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
  const pct = (p) =>
    latencies.length === 0
      ? NaN
      : latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] / 1000;
  return {
    rps: succeeded / seconds_,
    p50Ms: pct(0.5),
    p99Ms: pct(0.99),
    requests: succeeded,
    errors: failed + non2xx + grpcErrors,
    errorDetail: `failed/errored/timeout ${failed}, non-2xx ${non2xx}, gRPC errors (by DATA bytes) ${grpcErrors}`,
  };
}

async function load(port, scenario, request, seconds, scratch, expectedResponseBytes) {
  return scenario.api === "grpc"
    ? h2load(
        port,
        request,
        scenario.connections,
        scenario.streams ?? 1,
        seconds,
        scratch,
        expectedResponseBytes,
      )
    : wrk(port, request, scenario.connections, seconds, scratch);
}

// ---------------------------------------------------------------------------------------------
// Reporting

const median = (values) => {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

function summarise(runs) {
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

/**
 * Proxy versus floor, paired by round (each pair ran back to back, so a noisy neighbour hits both
 * alike), then the median over rounds: the req/s ratio and the added p50 latency.
 */
function paired(results, scenario) {
  const floor = results.get(`floor:${scenario.floor}`) ?? [];
  const proxy = results.get(`server:${scenario.id}`) ?? [];
  const n = Math.min(floor.length, proxy.length);
  if (n === 0) return { ratio: undefined, addedP50Ms: undefined };
  const rounds = [...Array(n).keys()];
  return {
    ratio: median(rounds.map((i) => proxy[i].rps / floor[i].rps)),
    addedP50Ms: median(rounds.map((i) => proxy[i].p50Ms - floor[i].p50Ms)),
  };
}

const fmt = {
  rps: (v) => (v === undefined || !Number.isFinite(v) ? "–" : Math.round(v).toLocaleString("en-US")),
  ms: (v) => (v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(v < 10 ? 3 : 1)),
  mb: (v) => (v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(0)),
  pct: (v) => (v === undefined || !Number.isFinite(v) ? "–" : `${(v * 100).toFixed(0)}%`),
};

function table(plan, results, skipped) {
  const lines = [
    "| scenario | floor req/s | proxy req/s | proxy/floor | floor p50 ms | proxy p50 ms | added p50 ms | floor p99 ms | proxy p99 ms | floor RSS MB | proxy RSS MB | floor CPU µs/req | proxy CPU µs/req | errors floor/proxy |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const scenario of plan) {
    const floor = summarise(results.get(`floor:${scenario.floor}`));
    const proxy = summarise(results.get(`server:${scenario.id}`));
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
 * Scrapes the server's metrics every `intervalMs` (Prometheus scrapes every 15-60 s; 5 s makes the scrape
 * cost, which lands on the server's CPU, count more, not less) until `stop()`, which resolves with the count
 * of good scrapes and the last body.
 */
function startScraper(metricsPort, intervalMs) {
  let scrapes = 0;
  let failed = 0;
  let last = "";
  const once = async () => {
    try {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, {
        signal: AbortSignal.timeout(5000),
      });
      const text = await res.text();
      if (res.status === 200) {
        scrapes += 1;
        last = text;
      } else failed += 1;
    } catch {
      failed += 1;
    }
  };
  const timer = setInterval(() => void once(), intervalMs);
  return {
    async stop() {
      clearInterval(timer);
      await once();
      return { scrapes, failed, last };
    },
  };
}

/**
 * Metrics on versus off: CPU per request of the server with metrics and of the one without, paired by
 * round (they ran back to back), with the spread of the per-round differences as the noise.
 */
function metricsCostTable(plan, results) {
  const lines = [
    "| scenario | req/s on | req/s off | CPU µs/req on | CPU µs/req off | cost per request (median of rounds) | per-round costs |",
    "|---|---:|---:|---:|---:|---:|---|",
  ];
  for (const scenario of plan) {
    const on = results.get(`server:${scenario.id}`) ?? [];
    const off = results.get(`bare:${scenario.id}`) ?? [];
    const n = Math.min(on.length, off.length);
    if (n === 0) continue;
    const costs = [...Array(n).keys()].map((i) => (on[i].cpuUs - off[i].cpuUs) / off[i].cpuUs);
    const a = summarise(on);
    const b = summarise(off);
    const signed = (v) => `${v >= 0 ? "+" : ""}${(v * 100).toFixed(1)}%`;
    lines.push(
      `| ${scenario.title} | ${fmt.rps(a?.rps)} | ${fmt.rps(b?.rps)} | ${fmt.rps(a?.cpuUs)} | ${fmt.rps(b?.cpuUs)} | ` +
        `${signed(median(costs))} (${fmt.rps(median([...Array(n).keys()].map((i) => on[i].cpuUs - off[i].cpuUs)))} µs) | ${costs.map(signed).join(", ")} |`,
    );
  }
  return lines.join("\n");
}

function verdicts(plan, results) {
  const lines = [];
  const check = (label, ok, detail) =>
    lines.push(`- ${ok === undefined ? "n/a " : ok ? "PASS" : "MISS"} ${label}: ${detail}`);
  const scenario = (key) => plan.find((s) => (s.key ?? s.id) === key);
  const rest32 = scenario("rest-32");
  if (rest32 !== undefined) {
    const { ratio } = paired(results, rest32);
    check(
      "REST 32 conns ≥ 50% of the floor's req/s",
      ratio === undefined ? undefined : ratio >= 0.5,
      fmt.pct(ratio),
    );
  }
  const rest1 = scenario("rest-1");
  if (rest1 !== undefined) {
    const { addedP50Ms } = paired(results, rest1);
    check(
      "REST 1 conn added p50 < 0.5 ms",
      addedP50Ms === undefined ? undefined : addedP50Ms < 0.5,
      `${fmt.ms(addedP50Ms)} ms`,
    );
  }
  const slow = scenario("slow-512");
  if (slow !== undefined) {
    const { ratio } = paired(results, slow);
    const p = summarise(results.get(`server:${slow.id}`));
    check(
      `${slow.connections} slow calls ≥ 90% of the floor's req/s, 0 errors, RSS < 200 MB`,
      ratio === undefined || p === undefined ? undefined : ratio >= 0.9 && p.errors === 0 && p.rssMb < 200,
      `${fmt.pct(ratio)}, ${p?.errors ?? "–"} errors, ${fmt.mb(p?.rssMb)} MB`,
    );
  }
  for (const [grpcId, restId] of [
    ["grpc-1", "rest-1"],
    ["grpc-32", "rest-32"],
    ["grpc-1x32", "rest-32"],
  ]) {
    if (scenario(grpcId) === undefined || scenario(restId) === undefined) continue;
    const g = summarise(results.get(`server:${grpcId}`));
    const r = summarise(results.get(`server:${restId}`));
    check(
      `gRPC (${grpcId}) ≥ REST (${restId}) req/s`,
      g && r ? g.rps >= r.rps : undefined,
      `${fmt.rps(g?.rps)} vs ${fmt.rps(r?.rps)}`,
    );
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------
// Main

async function requireTool(name, versionArgs) {
  const result = await run(name, versionArgs, {}).catch(() => undefined);
  if (result === undefined) {
    fail(`${name} is not installed. Install the load generators with: apt-get install -y wrk nghttp2-client`);
  }
}

async function main() {
  const options = readOptions();
  const plan = scenarios(options);
  if (plan.length === 0) fail(`--only matched no scenario (ids: see --help)`);
  if (plan.some((s) => s.api !== "grpc")) await requireTool("wrk", ["--version"]);
  if (!options.floorOnly && plan.some((s) => s.api === "grpc")) await requireTool("h2load", ["--version"]);
  if (!options.floorOnly && !existsSync(options.serverEntry)) {
    fail(
      `${path.relative(ROOT, options.serverEntry)} not found: run \`npm run build\` first (or pass --floor-only)`,
    );
  }

  if (options.nice !== undefined) {
    // Children inherit the priority, so the mock, the floor, the server and the load tools all get it.
    try {
      os.setPriority(options.nice);
    } catch (error) {
      fail(`--nice ${options.nice}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  const scratch = await mkdtemp(path.join(os.tmpdir(), "api-key-server-bench-"));
  const configDir = path.join(scratch, "config");
  await mkdir(configDir);
  const started = Date.now();
  const loadBefore = os.loadavg()[0];
  try {
    // The floor and the server each get a cgroup of the same size; the mock stands for the outside world.
    const floorCgroup = await memoryCgroup(options.memoryLimitMib, "floor");
    const serverCgroup = await memoryCgroup(options.memoryLimitMib, "server");
    log(`floor and server memory: ${serverCgroup.why}`);
    if (
      options.pin &&
      cpuCount >= 2 &&
      (await run("taskset", ["-V"], {}).catch(() => undefined)) !== undefined
    ) {
      pinning.enabled = true;
      await pin(process.pid, pinning.otherCpus);
    }
    log(
      pinning.enabled
        ? `pinned: floor and server on CPU ${pinning.testCpu}, mock and load tools on CPU ${pinning.otherCpus}`
        : "not pinned",
    );
    const mock = await forkHelper("mock-provider.mjs", []);
    await pin(mock.child.pid, pinning.otherCpus);
    const floor = await forkHelper("raw-forwarder.mjs", [String(mock.port)], floorCgroup.procs);
    await pin(floor.child.pid, pinning.testCpu);
    const token = await writeServerConfig(configDir, mock.port);
    const server = options.floorOnly
      ? undefined
      : await startServer(options, configDir, serverCgroup.procs, { metrics: options.metrics !== "off" });
    if (server !== undefined) await pin(server.child.pid, pinning.testCpu);
    // --metrics compare: the same server without metrics, in a cgroup of its own, measured in the same rounds.
    const bareCgroup =
      server !== undefined && options.metrics === "compare"
        ? await memoryCgroup(options.memoryLimitMib, "bare")
        : undefined;
    const bare =
      bareCgroup === undefined
        ? undefined
        : await startServer(options, configDir, bareCgroup.procs, { metrics: false });
    if (bare !== undefined) await pin(bare.child.pid, pinning.testCpu);
    const scraper = server?.metricsPort === undefined ? undefined : startScraper(server.metricsPort, 5000);
    log(
      `mock :${mock.port}, raw forwarder :${floor.port}` +
        (server === undefined
          ? ", server: not measured (--floor-only)"
          : `, server :${server.port} (pid ${server.child.pid})`) +
        (server?.metricsPort === undefined ? "" : `, metrics :${server.metricsPort}`) +
        (bare === undefined ? "" : `, server without metrics :${bare.port} (pid ${bare.child.pid})`),
    );

    // Which (target, scenario) runs to make; the floor once per distinct floor scenario.
    const targets = [];
    for (const scenario of plan) {
      if (scenario.floor === scenario.id)
        targets.push({ target: "floor", scenario, port: floor.port, pid: floor.child.pid });
      if (server !== undefined)
        targets.push({ target: "server", scenario, port: server.port, pid: server.child.pid });
      if (bare !== undefined)
        targets.push({ target: "bare", scenario, port: bare.port, pid: bare.child.pid });
    }
    const skipped = new Map();
    const failures = [];
    const expectedBytes = new Map();
    const active = [];
    for (const t of targets) {
      const request = requestFor(t.target, t.scenario, token);
      const check = await preflight(t.port, t.scenario, request).catch((error) => ({
        ok: false,
        why: String(error),
      }));
      if (!check.ok) {
        const why = check.why.replaceAll(token, "<token>");
        if (t.scenario.optional && t.target === "server") {
          skipped.set(t.scenario.id, `skipped: the server's pre-flight call failed (${why.slice(0, 80)})`);
          log(`skip ${t.target} ${t.scenario.id}: ${why}`);
        } else {
          failures.push(`${t.target} ${t.scenario.id}: pre-flight call failed: ${why}`);
          log(`FAIL ${t.target} ${t.scenario.id}: pre-flight call failed: ${why}`);
        }
        continue;
      }
      if (check.responseBytes !== undefined)
        expectedBytes.set(`${t.target}:${t.scenario.id}`, check.responseBytes);
      active.push({ ...t, request });
    }

    if (options.warmup > 0) {
      for (const t of active) {
        log(`warm-up ${t.target} ${t.scenario.id} (${options.warmup} s)`);
        await load(t.port, t.scenario, t.request, options.warmup, scratch, 0);
      }
    }

    const dead = (s) => s === undefined || s.child.exitCode !== null || s.child.signalCode !== null;
    const serverDead = () => dead(server);
    const targetDead = (t) =>
      t.target === "server" ? dead(server) : t.target === "bare" ? dead(bare) : false;
    /** Every other round the server without metrics goes first, so drift on the host hits both alike. */
    const roundOrder = (round) =>
      round % 2 === 1
        ? active
        : active.map((t, i) => {
            const next = active[i + 1];
            const previous = active[i - 1];
            if (t.target === "server" && next?.target === "bare" && next.scenario === t.scenario) return next;
            if (t.target === "bare" && previous?.target === "server" && previous.scenario === t.scenario)
              return previous;
            return t;
          });
    const results = new Map();
    for (let round = 1; round <= options.rounds; round++) {
      for (const t of roundOrder(round)) {
        const key = `${t.target}:${t.scenario.id}`;
        if (targetDead(t)) continue;
        const cpuBefore = await cpuMs(t.pid);
        const r = await load(
          t.port,
          t.scenario,
          t.request,
          options.duration,
          scratch,
          expectedBytes.get(key) ?? 0,
        );
        if (targetDead(t)) {
          const which = t.target === "bare" ? bare : server;
          failures.push(`${t.target} died during ${t.scenario.id} round ${round}: ${which?.describeExit()}`);
          log(`FAIL ${failures.at(-1)}`);
          continue;
        }
        const mem = await rssBytes(t.pid);
        // CPU per answered request of the process under test: the cost the ratios come from, less skewed
        // than req/s by the load tools and the mock sharing the cores.
        const cpuUsPerRequest =
          r.requests > 0 ? (((await cpuMs(t.pid)) - cpuBefore) * 1000) / r.requests : NaN;
        results.set(key, [...(results.get(key) ?? []), { ...r, rss: mem.rss, cpuUs: cpuUsPerRequest }]);
        log(
          `round ${round}/${options.rounds} ${(t.target === "bare" ? "no-met" : t.target).padEnd(6)} ${t.scenario.id.padEnd(11)} ${fmt.rps(r.rps).padStart(7)} req/s` +
            `  p50 ${fmt.ms(r.p50Ms)} ms  p99 ${fmt.ms(r.p99Ms)} ms  rss ${fmt.mb(mem.rss / 2 ** 20)} MB  cpu ${fmt.rps(cpuUsPerRequest)} µs/req  errors ${r.errors}` +
            (r.errors > 0 ? ` (${r.errorDetail})` : ""),
        );
        if (r.errors > 0) failures.push(`${key} round ${round}: ${r.errors} errors (${r.errorDetail})`);
        if (r.requests === 0) failures.push(`${key} round ${round}: no request completed`);
      }
    }
    // The gRPC error count by DATA bytes is an estimate; a last real call proves the server still
    // answers correctly after the load.
    for (const t of active.filter((a) => a.scenario.api === "grpc" && !targetDead(a))) {
      const check = await preflight(t.port, t.scenario, t.request).catch((error) => ({
        ok: false,
        why: String(error),
      }));
      if (!check.ok) failures.push(`${t.target} ${t.scenario.id}: call after the load failed: ${check.why}`);
    }

    const peak = serverDead() ? undefined : await rssBytes(server.child.pid);
    const scraped = await scraper?.stop();
    // Metrics on must mean metrics recorded: the last scrape counts the chat calls the load made.
    if (
      scraped !== undefined &&
      !/^api_key_server_requests_total\{[^}]*ChatService[^}]*status="200"[^}]*\} [1-9]/m.test(scraped.last)
    ) {
      failures.push(`metrics: the last scrape (of ${scraped.scrapes}) shows no chat request`);
    }
    if (server !== undefined) await stopChild(server.child);
    if (bare !== undefined) await stopChild(bare.child);
    await stopChild(floor.child);
    await stopChild(mock.child);

    const report = [
      `## Results (${new Date().toISOString()})`,
      "",
      `Machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.type()} ${os.release()}, Node ${process.version}; ` +
        `wrk and h2load on the same host. Rounds: ${options.rounds} × ${options.duration} s (warm-up ${options.warmup} s), medians shown${options.nice === undefined ? "" : `, every process at nice ${options.nice}`}. ` +
        (pinning.enabled
          ? `The floor and the server ran alone on CPU ${pinning.testCpu}; the mock, wrk/h2load and the harness on CPU ${pinning.otherCpus}. `
          : "Processes were not pinned to CPUs. ") +
        `Memory of the floor and the server: ${serverCgroup.why}` +
        (server === undefined
          ? ""
          : `; the server with NODE_OPTIONS="${server.nodeOptions}" (from the Dockerfile)`) +
        ". " +
        (scraped === undefined
          ? "Metrics off. "
          : `Metrics on: scraped every 5 s during the run (${scraped.scrapes} scrape${scraped.scrapes === 1 ? "" : "s"}, ${scraped.failed} failed). `) +
        `1-minute load average ${loadBefore.toFixed(1)} at the start, ${os.loadavg()[0].toFixed(1)} at the end (other work on the host skews absolute numbers; the paired ratios less so).`,
      "",
      `Command: \`npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}\``,
      "",
      table(plan, results, skipped),
      "",
      ...(bare === undefined
        ? []
        : [
            "Metrics on versus off (`--metrics compare`): the server above (metrics recorded and scraped) and the same server without metrics, CPU per answered request, paired by round:",
            "",
            metricsCostTable(plan, results),
            "",
          ]),
      "Floor = the raw forwarder (Node http, keep-alive agent, no parsing). Connect and gRPC rows compare with the REST floor at the same concurrency (the floor speaks HTTP/1.1 only). gRPC runs use h2load (one stream per connection, except the 1 conn × 32 streams row); its errors are transport errors, non-2xx and calls with no answer DATA (a gRPC error is HTTP 200 + grpc-status), and every gRPC scenario makes a checked real call before and after the load.",
      "",
      peak === undefined ? "" : `Server peak RSS (VmHWM) over the run: ${fmt.mb(peak.hwm / 2 ** 20)} MB.`,
      "",
      "Targets:",
      "",
      verdicts(plan, results),
    ];
    if (server !== undefined && options.cpuProf) {
      const files = (await readdir(server.profileDir)).filter((f) => f.endsWith(".cpuprofile")).sort();
      const newest = files.at(-1);
      if (newest !== undefined) {
        const file = path.join(server.profileDir, newest);
        report.push(
          "",
          `CPU profile of the server (${path.relative(ROOT, file)}):`,
          "",
          formatProfileSummary(await summariseProfile(file)),
        );
      } else {
        report.push("", "No CPU profile was written (did the server exit cleanly on SIGTERM?).");
      }
    }
    if (skipped.size > 0) report.push("", ...[...skipped].map(([id, why]) => `- ${id}: ${why}`));
    if (failures.length > 0) report.push("", "Failures:", "", ...failures.map((f) => `- ${f}`));
    const text = report.join("\n");
    process.stdout.write(`\n${text}\n`);
    await mkdir(path.dirname(options.out), { recursive: true });
    await writeFile(options.out, `${text}\n`);
    log(
      `\nreport written to ${path.relative(process.cwd(), options.out)}; took ${((Date.now() - started) / 1000).toFixed(0)} s`,
    );
    if (failures.length > 0) {
      log(`${failures.length} failure(s): see above`);
      process.exitCode = 1;
    }
  } finally {
    for (const child of children) child.kill("SIGKILL");
    await rm(scratch, { recursive: true, force: true });
    await removeCgroups();
  }
}

process.on("SIGINT", () => {
  for (const child of children) child.kill("SIGKILL");
  process.exit(130);
});

await main();
