// The soak (issue 18, memory): the built server under mixed traffic for a long time, as on Cloud Run (the
// Dockerfile's NODE_OPTIONS, a 512 MiB memory cgroup), sampling what it keeps. Not part of `npm test`.
//
// Every 10 s: RSS (/proc), heap used right after a full collection and event-loop delay (both read through
// the inspector the server is started with, so the server carries no soak code). Heap snapshots at 5 minutes
// and at the end are compared by constructor: what grew between them is what the server retained. After the
// load, one idle minute shows whether RSS comes back. See bench/README.md.
/* global fetch, AbortController, WebSocket, console */
import { Buffer } from "node:buffer";
import { fork, spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http2 from "node:http2";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { clearTimeout, setTimeout } from "node:timers";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import {
  encodeChatRequest,
  freePort,
  grpcFrame,
  inCgroup,
  loadChatPb,
  memoryCgroup,
  productionNodeOptions,
  removeCgroups,
} from "./lib/harness.ts";

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);

const USAGE = `usage: npm run soak -- [options]
  --minutes <n>         minutes of load (default 30)
  --snapshot-at <n>     minute of the first heap snapshot (default 5; the second is taken when the load ends)
  --rate <n>            calls started per second (default 100), at most --max-in-flight open at once (default 256)
  --idle <s>            seconds of sampling with no load after the run (default 60)
  --memory-limit <MiB>  the server's memory cgroup (default 512; 0 = none; needs root and cgroup v1 or v2)
  --out <dir>           where the report, the series and the snapshots go (default bench/out/soak)
  --server-env <K=V>    extra environment for the server (repeatable)`;

function readOptions() {
  const { values } = parseArgs({
    options: {
      minutes: { type: "string", default: "30" },
      "snapshot-at": { type: "string", default: "5" },
      rate: { type: "string", default: "100" },
      "max-in-flight": { type: "string", default: "256" },
      idle: { type: "string", default: "60" },
      "memory-limit": { type: "string", default: "512" },
      out: { type: "string", default: path.join(BENCH_DIR, "out", "soak") },
      "server-env": { type: "string", multiple: true, default: [] },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const number = (name) => {
    const value = Number(values[name]);
    if (!Number.isFinite(value) || value < 0) throw new Error(`--${name}: expected a number >= 0`);
    return value;
  };
  return {
    minutes: number("minutes"),
    snapshotAt: number("snapshot-at"),
    rate: number("rate"),
    maxInFlight: number("max-in-flight"),
    idleSeconds: number("idle"),
    memoryLimitMib: number("memory-limit"),
    out: path.resolve(values.out),
    serverEnv: Object.fromEntries(values["server-env"].map((kv) => kv.split(/=(.*)/s).slice(0, 2))),
  };
}

// ---------------------------------------------------------------------------------------------
// Processes

const children = new Set();

async function startMock() {
  const child = fork(path.join(BENCH_DIR, "lib", "mock-provider.mjs"), [], {
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  children.add(child);
  const [message] = await once(child, "message");
  return { child, port: message.port };
}

async function writeConfig(dir, mockPort) {
  const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: "soak", alg: "ES256", use: "sig" };
  const product = (prefix) => ({
    providers: {
      openai: {
        api_key: "sk-soak-not-a-real-key",
        base_url: `http://127.0.0.1:${mockPort}${prefix}/v1`,
        models: ["gpt-4o-mini"],
      },
    },
    rate_limit: { requests_per_minute: 100_000_000 },
  });
  const products = {
    soak: product(""),
    "soak-slow": product("/delay/300"),
    "soak-error": product("/status/500"),
    "soak-limited": product("/status/429"),
  };
  await writeFile(path.join(dir, "openai_api_keys.json"), JSON.stringify(products));
  await writeFile(path.join(dir, "jwt_public_keys.json"), JSON.stringify({ keys: [jwk] }));
  // Several callers, as in production: per-caller state (limits, counters) is part of what is soaked.
  return Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      new SignJWT({ products: Object.keys(products) })
        .setProtectedHeader({ alg: "ES256", kid: "soak" })
        .setSubject(`soak-caller-${i}`)
        .setIssuedAt()
        .setExpirationTime("4h")
        .sign(privateKey),
    ),
  );
}

async function startServer(options, configDir, procs) {
  const port = await freePort();
  const env = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? os.tmpdir(),
    NODE_ENV: "production",
    PORT: String(port),
    API_KEY_SERVER_HOST: "127.0.0.1",
    API_KEY_SERVER_CONFIG_DIR: configDir,
    API_KEY_SERVER_JWT_MAX_AGE_SECONDS: String(4 * 3600),
    NODE_OPTIONS: await productionNodeOptions(),
    ...options.serverEnv,
  };
  const entry = path.join(ROOT, "dist", "src", "main.js");
  const [command, ...args] = inCgroup(procs, [process.execPath, "--inspect=127.0.0.1:0", entry]);
  const child = spawn(command, args, { env, stdio: ["ignore", "ignore", "pipe"] });
  children.add(child);
  child.stderr.setEncoding("utf8");
  let stderr = "";
  const inspectorUrl = new Promise((resolve, reject) => {
    child.stderr.on("data", (text) => {
      stderr = (stderr + text).slice(-4000);
      const match = /ws:\/\/\S+/.exec(stderr);
      if (match !== null) resolve(match[0]);
    });
    child.once("exit", (code) => reject(new Error(`the server exited with code ${code}: ${stderr}`)));
  });
  const url = await inspectorUrl;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const res = await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined);
    await res?.arrayBuffer();
    if (res?.status === 200) break;
    if (Date.now() > deadline) throw new Error("the server did not answer GET /health with 200 within 30 s");
    await sleep(100);
  }
  return { child, port, inspectorUrl: url, nodeOptions: env.NODE_OPTIONS };
}

async function stopAll() {
  for (const child of children) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(timer);
  }
  children.clear();
}

// ---------------------------------------------------------------------------------------------
// The inspector: GC, memory, event-loop delay and heap snapshots, read from outside the server

async function connectInspector(url) {
  const socket = new WebSocket(url);
  await once(socket, "open");
  let nextId = 1;
  const pending = new Map();
  let onChunk;
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(String(event.data));
    if (message.method === "HeapProfiler.addHeapSnapshotChunk") onChunk?.(message.params.chunk);
    const waiter = pending.get(message.id);
    if (waiter === undefined) return;
    pending.delete(message.id);
    if (message.error) waiter.reject(new Error(message.error.message));
    else waiter.resolve(message.result);
  });
  const send = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      socket.send(JSON.stringify({ id, method, params }));
    });
  const evaluate = async (expression) => {
    const { result, exceptionDetails } = await send("Runtime.evaluate", { expression, returnByValue: true });
    if (exceptionDetails) throw new Error(`evaluate failed: ${JSON.stringify(exceptionDetails)}`);
    return result.value;
  };
  // The histogram lives in the server; only this string is evaluated there.
  await evaluate(
    `globalThis.__soakDelay = process.getBuiltinModule("node:perf_hooks").monitorEventLoopDelay({ resolution: 10 });
     globalThis.__soakDelay.enable(); true`,
  );
  return {
    /** Event-loop delay since the last call (ms), then a full GC and the heap used after it. */
    async sample() {
      const delay = await evaluate(
        `(() => { const h = globalThis.__soakDelay; const r = { p50: h.percentile(50) / 1e6,
          p99: h.percentile(99) / 1e6, max: h.max / 1e6 }; h.reset(); return r; })()`,
      );
      await send("HeapProfiler.collectGarbage");
      const memory = await evaluate("process.memoryUsage()");
      return { delay, memory };
    },
    async snapshot(file) {
      const out = createWriteStream(file);
      onChunk = (chunk) => out.write(chunk);
      await send("HeapProfiler.collectGarbage");
      await send("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
      onChunk = undefined;
      out.end();
      await once(out, "finish");
    },
    close: () => socket.close(),
  };
}

/** Count and self size per node type and name ("object:Foo", "closure:bar", ...) of a .heapsnapshot. */
async function summariseSnapshot(file) {
  const snapshot = JSON.parse(await readFile(file, "utf8"));
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  const groups = new Map();
  const { nodes, strings } = snapshot;
  for (let i = 0; i < nodes.length; i += fields.length) {
    const type = types[nodes[i + typeAt]];
    // Strings and code are grouped by type only: their "names" are their contents.
    const name = ["string", "concatenated string", "sliced string", "code", "number"].includes(type)
      ? type
      : `${type}:${strings[nodes[i + nameAt]].slice(0, 60)}`;
    const group = groups.get(name) ?? { count: 0, size: 0 };
    group.count += 1;
    group.size += nodes[i + sizeAt];
    groups.set(name, group);
  }
  return groups;
}

function compareSnapshots(before, after, top = 15) {
  const rows = [];
  for (const [name, a] of after) {
    const b = before.get(name) ?? { count: 0, size: 0 };
    rows.push({ name, countDelta: a.count - b.count, sizeDelta: a.size - b.size, count: a.count });
  }
  for (const [name, b] of before) {
    if (!after.has(name)) rows.push({ name, countDelta: -b.count, sizeDelta: -b.size, count: 0 });
  }
  const total = (groups) => [...groups.values()].reduce((sum, g) => sum + g.size, 0);
  return {
    before: total(before),
    after: total(after),
    grown: rows.sort((x, y) => y.sizeDelta - x.sizeDelta).slice(0, top),
  };
}

// ---------------------------------------------------------------------------------------------
// Traffic

/** A small seeded PRNG (mulberry32), so two runs send the same mix. */
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * The messages in Connect JSON: protobuf's canonical form, where `content` is the typed `text` member (the
 * REST shape `content: "Hello"` is a 400 on Connect, as for the benchmark's Connect scenarios).
 */
const CONNECT_MESSAGES = [{ role: "user", text: "Hello" }];

/** `pb`: the generated chat.proto code (dist/gen), for the gRPC calls. */
function createTraffic(port, tokens, pb) {
  const base = `http://127.0.0.1:${port}`;
  const next = random(18);
  const token = () => tokens[Math.floor(next() * tokens.length)];
  const body = (stream) =>
    JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }], stream });
  const json = (product, auth, stream = false) =>
    fetch(`${base}/v1/chat/${product}${stream ? ":stream" : ""}`, {
      method: "POST",
      headers: { authorization: auth, "content-type": "application/json" },
      body: body(stream),
    });
  const drain = async (res) => {
    await res.arrayBuffer();
    return String(res.status);
  };
  let session;
  const h2 = () => {
    if (session === undefined || session.closed || session.destroyed) {
      session = http2.connect(base);
      session.on("error", () => undefined);
      session.unref();
    }
    return session;
  };
  /** One gRPC call; `cancelAfterMs` resets the stream (a client cancel) after that long. */
  const grpc = (method, product, cancelAfterMs) =>
    new Promise((resolve) => {
      const stream = h2().request({
        ":method": "POST",
        ":path": `/apikeyserver.v1.ChatService/${method}`,
        "content-type": "application/grpc",
        te: "trailers",
        authorization: `Bearer ${token()}`,
      });
      let status = "no-status";
      stream.on("response", (headers) => {
        if (headers["grpc-status"] !== undefined) status = `grpc-${headers["grpc-status"]}`;
      });
      stream.on("trailers", (trailers) => {
        status = `grpc-${trailers["grpc-status"]}`;
      });
      stream.on("data", () => undefined);
      stream.on("close", () => resolve(status));
      stream.on("error", () => undefined);
      stream.end(grpcFrame(encodeChatRequest(pb, product, "gpt-4o-mini", "Hello")));
      if (cancelAfterMs !== undefined) {
        setTimeout(() => {
          if (!stream.closed) status = "cancelled";
          stream.close(http2.constants.NGHTTP2_CANCEL);
        }, cancelAfterMs);
      }
    });
  const connectStream = async (product) => {
    const message = Buffer.from(
      JSON.stringify({ product, model: "gpt-4o-mini", messages: CONNECT_MESSAGES }),
    );
    const envelope = Buffer.alloc(5);
    envelope.writeUInt32BE(message.length, 1);
    const res = await fetch(`${base}/apikeyserver.v1.ChatService/StreamChatCompletion`, {
      method: "POST",
      headers: { authorization: `Bearer ${token()}`, "content-type": "application/connect+json" },
      body: Buffer.concat([envelope, message]),
    });
    return drain(res);
  };
  const cancelled = async (product, afterMs) => {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), afterMs);
    try {
      const res = await fetch(`${base}/v1/chat/${product}:stream`, {
        method: "POST",
        headers: { authorization: `Bearer ${token()}`, "content-type": "application/json" },
        body: body(true),
        signal: controller.signal,
      });
      return await drain(res);
    } catch {
      return "cancelled";
    } finally {
      clearTimeout(timer);
    }
  };
  /** [name, weight, call, the outcomes that count as expected]. */
  const kinds = [
    ["rest-unary", 25, async () => drain(await json("soak", `Bearer ${token()}`)), ["200"]],
    [
      "connect-unary",
      10,
      async () =>
        drain(
          await fetch(`${base}/apikeyserver.v1.ChatService/CreateChatCompletion`, {
            method: "POST",
            headers: { authorization: `Bearer ${token()}`, "content-type": "application/json" },
            body: JSON.stringify({
              product: "soak",
              model: "gpt-4o-mini",
              messages: CONNECT_MESSAGES,
            }),
          }),
        ),
      ["200"],
    ],
    ["grpc-unary", 15, () => grpc("CreateChatCompletion", "soak"), ["grpc-0"]],
    ["rest-stream", 10, async () => drain(await json("soak-slow", `Bearer ${token()}`, true)), ["200"]],
    ["connect-stream", 5, () => connectStream("soak-slow"), ["200"]],
    ["grpc-stream", 5, () => grpc("StreamChatCompletion", "soak-slow"), ["grpc-0"]],
    ["upstream-500", 5, async () => drain(await json("soak-error", `Bearer ${token()}`)), ["502", "503"]],
    ["upstream-429", 5, async () => drain(await json("soak-limited", `Bearer ${token()}`)), ["429"]],
    ["bad-token", 10, async () => drain(await json("soak", `Bearer ${token().slice(0, -4)}AAAA`)), ["401"]],
    ["rest-cancel", 5, () => cancelled("soak-slow", 50 + Math.floor(next() * 150)), ["cancelled"]],
    ["grpc-cancel", 5, () => grpc("StreamChatCompletion", "soak-slow", 100), ["cancelled"]],
  ];
  const totalWeight = kinds.reduce((sum, [, weight]) => sum + weight, 0);
  const outcomes = new Map(kinds.map(([name]) => [name, new Map()]));
  const pick = () => {
    let r = next() * totalWeight;
    for (const kind of kinds) {
      r -= kind[1];
      if (r < 0) return kind;
    }
    return kinds[0];
  };
  let inFlight = 0;
  let sent = 0;
  let unexpected = 0;
  return {
    /** Starts one call unless `maxInFlight` are open. */
    fire(maxInFlight) {
      if (inFlight >= maxInFlight) return;
      const [name, , call, expected] = pick();
      inFlight += 1;
      sent += 1;
      void call()
        .catch((err) => `error: ${err instanceof Error ? err.message : String(err)}`)
        .then((outcome) => {
          inFlight -= 1;
          if (!expected.includes(outcome)) unexpected += 1;
          const counts = outcomes.get(name);
          counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
        });
    },
    stats: () => ({ sent, inFlight, unexpected }),
    outcomes,
    close: () => session?.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// The run

async function rssMib(pid) {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? Number.NaN) / 1024;
}

const mib = (bytes) => bytes / 2 ** 20;
const fixed = (n, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a");
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
};

async function main() {
  const options = readOptions();
  await mkdir(options.out, { recursive: true });
  const seriesFile = path.join(options.out, "series.jsonl");
  const series = createWriteStream(seriesFile);
  const configDir = await mkdtemp(path.join(os.tmpdir(), "api-key-server-soak-"));
  const started = Date.now();
  try {
    const mock = await startMock();
    const tokens = await writeConfig(configDir, mock.port);
    const cgroup = await memoryCgroup(options.memoryLimitMib, "soak-server");
    const server = await startServer(options, configDir, cgroup.procs);
    const inspector = await connectInspector(server.inspectorUrl);
    const traffic = createTraffic(server.port, tokens, await loadChatPb());
    console.log(
      `soak: ${options.minutes} min at ${options.rate} calls/s, server ${cgroup.why}, ` +
        `NODE_OPTIONS="${server.nodeOptions}"; series in ${seriesFile}`,
    );

    const samples = [];
    const sample = async (phase) => {
      const { delay, memory } = await inspector.sample();
      const row = {
        seconds: Math.round((Date.now() - loadStart) / 1000),
        phase,
        rssMib: await rssMib(server.child.pid),
        heapUsedAfterGcMib: mib(memory.heapUsed),
        heapTotalMib: mib(memory.heapTotal),
        externalMib: mib(memory.external),
        loopDelayP50Ms: delay.p50,
        loopDelayP99Ms: delay.p99,
        loopDelayMaxMs: delay.max,
        ...traffic.stats(),
      };
      samples.push(row);
      series.write(`${JSON.stringify(row)}\n`);
      console.log(
        `${String(row.seconds).padStart(5)} s ${phase}: rss ${fixed(row.rssMib)} MiB, heap after GC ` +
          `${fixed(row.heapUsedAfterGcMib)} MiB, loop delay p99 ${fixed(row.loopDelayP99Ms)} ms, ` +
          `sent ${row.sent}, in flight ${row.inFlight}, unexpected ${row.unexpected}`,
      );
    };

    const loadStart = Date.now();
    const loadMs = options.minutes * 60_000;
    const snapshotAtMs = options.snapshotAt * 60_000;
    const early = path.join(options.out, `at-${options.snapshotAt}min.heapsnapshot`);
    const late = path.join(options.out, `at-${options.minutes}min.heapsnapshot`);
    let earlyTaken = false;
    let nextSampleAt = loadStart + 10_000;
    const gapMs = 1000 / options.rate;
    let nextCallAt = loadStart;
    while (Date.now() - loadStart < loadMs) {
      const now = Date.now();
      // Catch up after a sample or snapshot paused the loop, without a burst bigger than one second's worth.
      nextCallAt = Math.max(nextCallAt, now - 1000);
      while (nextCallAt <= now) {
        traffic.fire(options.maxInFlight);
        nextCallAt += gapMs;
      }
      if (now >= nextSampleAt) {
        nextSampleAt += 10_000;
        await sample("load");
      }
      if (!earlyTaken && now - loadStart >= snapshotAtMs) {
        earlyTaken = true;
        await inspector.snapshot(early);
        console.log(`heap snapshot: ${early}`);
      }
      await sleep(Math.max(1, Math.min(nextCallAt, nextSampleAt) - Date.now()));
    }
    while (traffic.stats().inFlight > 0) await sleep(50);
    await inspector.snapshot(late);
    console.log(`heap snapshot: ${late}`);
    const idleEnd = Date.now() + options.idleSeconds * 1000;
    while (Date.now() < idleEnd) {
      await sleep(10_000);
      await sample("idle");
    }
    inspector.close();
    traffic.close();

    const comparison = earlyTaken
      ? compareSnapshots(await summariseSnapshot(early), await summariseSnapshot(late))
      : undefined;
    const report = formatReport(
      options,
      cgroup.why,
      server.nodeOptions,
      samples,
      traffic.outcomes,
      comparison,
    );
    await writeFile(path.join(options.out, "report.md"), report);
    console.log(`\n${report}`);
    console.log(
      `report: ${path.join(options.out, "report.md")}; took ${fixed((Date.now() - started) / 60_000)} min`,
    );
  } finally {
    series.end();
    await stopAll();
    await removeCgroups();
    await rm(configDir, { recursive: true, force: true });
  }
}

function formatReport(options, cgroupWhy, nodeOptions, samples, outcomes, comparison) {
  const load = samples.filter((s) => s.phase === "load");
  const lastTenMinutes = load.filter((s) => s.seconds > options.minutes * 60 - 600);
  const steadyRss = median(lastTenMinutes.map((s) => s.rssMib));
  const lines = [
    `## Soak: ${options.minutes} min, ${options.rate} calls/s started, ${new Date().toISOString()}`,
    "",
    `Server from dist/ with NODE_OPTIONS="${nodeOptions}", ${cgroupWhy}; ${os.cpus().length} CPUs shared with ` +
      "everything else running on the host.",
    "",
    `Steady-state RSS (median of the last 10 minutes of load): **${fixed(steadyRss)} MiB**; ` +
      `max RSS ${fixed(Math.max(...samples.map((s) => s.rssMib)))} MiB; ` +
      `after ${options.idleSeconds} s idle ${fixed(samples.at(-1)?.rssMib ?? Number.NaN)} MiB.`,
    "",
    "| minute | RSS MiB | heap used after GC MiB | external MiB | loop delay p50 / p99 / max ms | calls sent | unexpected |",
    "|---:|---:|---:|---:|---|---:|---:|",
  ];
  // One row per minute (the full 10 s series is in series.jsonl).
  for (const s of samples.filter((row) => row.seconds % 60 < 10 || row.phase === "idle")) {
    lines.push(
      `| ${fixed(s.seconds / 60, 0)}${s.phase === "idle" ? " (idle)" : ""} | ${fixed(s.rssMib)} | ` +
        `${fixed(s.heapUsedAfterGcMib, 2)} | ${fixed(s.externalMib, 2)} | ${fixed(s.loopDelayP50Ms)} / ` +
        `${fixed(s.loopDelayP99Ms)} / ${fixed(s.loopDelayMaxMs)} | ${s.sent} | ${s.unexpected} |`,
    );
  }
  lines.push("", "Outcomes per kind of call:", "", "| kind | outcomes |", "|---|---|");
  for (const [name, counts] of outcomes) {
    lines.push(`| ${name} | ${[...counts].map(([o, n]) => `${o}: ${n}`).join(", ")} |`);
  }
  if (comparison !== undefined) {
    lines.push(
      "",
      `Heap snapshots (after a full GC): ${fixed(mib(comparison.before), 2)} MiB at minute ${options.snapshotAt}, ` +
        `${fixed(mib(comparison.after), 2)} MiB at the end. Largest growth by constructor:`,
      "",
      "| node | count Δ | self size Δ KiB | count at end |",
      "|---|---:|---:|---:|",
      ...comparison.grown.map(
        (g) =>
          `| \`${g.name.replaceAll("|", "\\|")}\` | ${g.countDelta} | ${fixed(g.sizeDelta / 1024)} | ${g.count} |`,
      ),
    );
  }
  return `${lines.join("\n")}\n`;
}

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    void stopAll()
      .then(removeCgroups)
      .finally(() => process.exit(130));
  });
}

await main();
