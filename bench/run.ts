// The benchmark (issue 6): the proxy against a floor, in the same run, on loopback. See bench/README.md.
//
// Processes: a mock OpenAI provider, a raw forwarder (the floor: a Node hop that pipes bytes and does
// nothing else), the real server from dist/ with production settings (JWT auth, memory rate limiter with
// limits that never trigger, access log at info written to /dev/null) and, with --peer, a published
// gateway on the same mock. wrk drives HTTP/1.1 and h2load drives gRPC over h2c. Each scenario runs on the
// floor, the server (and the peer) back to back, for several rounds; the table shows medians and ratios.
//
// The roles live in bench/lib: options.ts (command line), scenarios.ts, requests.ts (what each target is
// sent), processes.ts (children, cgroups, pinning, /proc), server.ts, peer.ts, preflight.ts, load.ts
// (wrk, h2load), report.ts, profile-summary.ts. This file runs them in order.
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import type { ChatPb } from "./lib/harness.ts";
import { loadChatPb, memoryCgroup, removeCgroups } from "./lib/harness.ts";
import type { LoadResult } from "./lib/load.ts";
import { load } from "./lib/load.ts";
import { fail, log, readOptions } from "./lib/options.ts";
import { ROOT } from "./lib/paths.ts";
import { PEERS, installPeer, peerRuns, startPeer } from "./lib/peer.ts";
import { preflight } from "./lib/preflight.ts";
import type { Service } from "./lib/processes.ts";
import {
  cpuCount,
  cpuMs,
  forkHelper,
  isDead,
  killChildren,
  pin,
  pinning,
  rssBytes,
  run,
  sampleRss,
  stopChild,
} from "./lib/processes.ts";
import { formatProfileSummary, summariseProfile } from "./lib/profile-summary.ts";
import type { Results } from "./lib/report.ts";
import { fmt, renderReport, resultKey } from "./lib/report.ts";
import type { BenchRequest, TargetKind } from "./lib/requests.ts";
import { requestFor } from "./lib/requests.ts";
import type { Scenario } from "./lib/scenarios.ts";
import { scenarios } from "./lib/scenarios.ts";
import { scrapeShowsChatCalls, startScraper, startServer, writeServerConfig } from "./lib/server.ts";

/** One process to measure on one scenario. */
interface Target {
  target: TargetKind;
  scenario: Scenario;
  service: { child: { pid?: number | undefined }; port: number };
}

interface ActiveTarget extends Target {
  request: BenchRequest;
  pid: number;
}

function pidOf(service: { child: { pid?: number | undefined } }): number {
  const pid = service.child.pid;
  if (pid === undefined) throw new Error("a measured process has no pid");
  return pid;
}

async function requireTool(name: string, versionArgs: string[]): Promise<void> {
  const result = await run(name, versionArgs).catch(() => undefined);
  if (result === undefined) {
    fail(`${name} is not installed. Install the load generators with: apt-get install -y wrk nghttp2-client`);
  }
}

/** Every other round the server without metrics goes first, so drift on the host hits both alike. */
function roundOrder(active: ActiveTarget[], round: number): ActiveTarget[] {
  if (round % 2 === 1) return active;
  return active.map((t, i) => {
    const next = active[i + 1];
    const previous = active[i - 1];
    if (t.target === "server" && next?.target === "bare" && next.scenario === t.scenario) return next;
    if (t.target === "bare" && previous?.target === "server" && previous.scenario === t.scenario)
      return previous;
    return t;
  });
}

async function main(): Promise<void> {
  const options = readOptions();
  const plan = scenarios(options);
  if (plan.length === 0) fail(`--only matched no scenario (ids: see --help)`);
  const peerSpec = options.peer === undefined ? undefined : PEERS[options.peer];
  if (peerSpec !== undefined && !plan.some(peerRuns)) {
    fail(`--peer measures the REST unary scenarios (rest-1, rest-32, slow-512); --only selected none`);
  }
  if (plan.some((s) => s.api !== "grpc")) await requireTool("wrk", ["--version"]);
  if (!options.floorOnly && plan.some((s) => s.api === "grpc")) await requireTool("h2load", ["--version"]);
  if (!options.floorOnly && !existsSync(options.serverEntry)) {
    fail(
      `${path.relative(ROOT, options.serverEntry)} not found: run \`npm run build\` first (or pass --floor-only)`,
    );
  }
  // The gRPC bodies come from the generated code as built (dist/gen), which the server needs anyway.
  let pb: ChatPb | undefined;
  if (!options.floorOnly && plan.some((s) => s.api === "grpc")) {
    pb = await loadChatPb().catch((error: unknown) => fail(String(error)));
  }

  if (options.nice !== undefined) {
    // Children inherit the priority, so the mock, the floor, the server and the load tools all get it.
    try {
      os.setPriority(options.nice);
    } catch (error) {
      fail(`--nice ${options.nice}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  // Installed before the clock starts: a first install takes a while and is not part of the run.
  const peerPackage =
    peerSpec === undefined
      ? undefined
      : await (async () => {
          log(`peer: ${peerSpec.package}@${peerSpec.version} in ${options.peerDir}`);
          const installed = await installPeer(peerSpec, options.peerDir);
          log(`peer: ${installed.installed ? "installed" : "already installed"} at ${installed.packageDir}`);
          return installed;
        })().catch((error: unknown) =>
          fail(`--peer: ${error instanceof Error ? error.message : String(error)}`),
        );

  const scratch = await mkdtemp(path.join(os.tmpdir(), "api-key-server-bench-"));
  const configDir = path.join(scratch, "config");
  await mkdir(configDir);
  const started = Date.now();
  const loadBefore = os.loadavg()[0] ?? NaN;
  try {
    // The floor, the server (and the peer) each get a cgroup of the same size; the mock stands for the
    // outside world.
    const floorCgroup = await memoryCgroup(options.memoryLimitMib, "floor");
    const serverCgroup = await memoryCgroup(options.memoryLimitMib, "server");
    log(`floor and server memory: ${serverCgroup.why}`);
    if (options.pin && cpuCount >= 2 && (await run("taskset", ["-V"]).catch(() => undefined)) !== undefined) {
      pinning.enabled = true;
      await pin(process.pid, pinning.otherCpus);
    }
    log(
      pinning.enabled
        ? `pinned: the processes under test (floor, server${peerSpec === undefined ? "" : ", peer"}) on CPU ${pinning.testCpu}, mock and load tools on CPU ${pinning.otherCpus}`
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
    // --peer: the published gateway with the server's treatment (own cgroup of the same size, same CPU, same
    // NODE_OPTIONS).
    let peer: Service | undefined;
    if (peerPackage !== undefined && server !== undefined) {
      const peerCgroup = await memoryCgroup(options.memoryLimitMib, "peer");
      peer = await startPeer(
        peerPackage,
        peerCgroup.procs,
        server.nodeOptions,
        path.join(scratch, "peer"),
        options.serverLog,
      );
      await pin(peer.child.pid, pinning.testCpu);
    }
    const scraper = server?.metricsPort === undefined ? undefined : startScraper(server.metricsPort, 5000);
    log(
      `mock :${mock.port}, raw forwarder :${floor.port}` +
        (server === undefined
          ? ", server: not measured (--floor-only)"
          : `, server :${server.port} (pid ${server.child.pid})`) +
        (server?.metricsPort === undefined ? "" : `, metrics :${server.metricsPort}`) +
        (bare === undefined ? "" : `, server without metrics :${bare.port} (pid ${bare.child.pid})`) +
        (peer === undefined ? "" : `, peer :${peer.port} (pid ${peer.child.pid})`),
    );

    // Which (target, scenario) runs to make; the floor once per distinct floor scenario.
    const targets: Target[] = [];
    for (const scenario of plan) {
      if (scenario.floor === scenario.id) targets.push({ target: "floor", scenario, service: floor });
      if (server !== undefined) targets.push({ target: "server", scenario, service: server });
      if (bare !== undefined) targets.push({ target: "bare", scenario, service: bare });
      if (peer !== undefined && peerRuns(scenario)) targets.push({ target: "peer", scenario, service: peer });
    }
    const context = {
      token,
      pb,
      peer: peerSpec === undefined ? undefined : { spec: peerSpec, mockPort: mock.port },
    };
    const skipped = new Map<string, string>();
    const failures: string[] = [];
    const expectedBytes = new Map<string, number>();
    const active: ActiveTarget[] = [];
    for (const t of targets) {
      const pid = pidOf(t.service);
      const request = requestFor(t.target, t.scenario, context);
      const check = await preflight(t.service.port, t.scenario, request);
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
        expectedBytes.set(resultKey(t.target, t.scenario.id), check.responseBytes);
      active.push({ ...t, request, pid });
    }

    if (options.warmup > 0) {
      for (const t of active) {
        log(
          `warm-up ${t.target} ${t.scenario.id} (${t.scenario.api === "sse" ? "one wave" : `${options.warmup} s`})`,
        );
        await load(t.service.port, t.scenario, t.request, options.warmup, scratch, 0);
      }
    }

    const processOf = (t: TargetKind): Service | undefined =>
      t === "server" ? server : t === "bare" ? bare : t === "peer" ? peer : undefined;
    const targetDead = (t: Target): boolean => t.target !== "floor" && isDead(processOf(t.target)?.child);
    const results: Results = new Map();
    for (let round = 1; round <= options.rounds; round++) {
      for (const t of roundOrder(active, round)) {
        const key = resultKey(t.target, t.scenario.id);
        if (targetDead(t)) continue;
        const cpuBefore = await cpuMs(t.pid);
        // sse-<n>: the target's memory while the streams are open, not only after them.
        const sampler = t.scenario.api === "sse" ? sampleRss(t.pid, 50) : undefined;
        let r: LoadResult;
        let peakRss: number | undefined;
        try {
          r = await load(
            t.service.port,
            t.scenario,
            t.request,
            options.duration,
            scratch,
            expectedBytes.get(key) ?? 0,
          );
        } finally {
          peakRss = await sampler?.stop();
        }
        if (targetDead(t)) {
          failures.push(
            `${t.target} died during ${t.scenario.id} round ${round}: ${processOf(t.target)?.describeExit()}`,
          );
          log(`FAIL ${failures.at(-1)}`);
          continue;
        }
        const mem = await rssBytes(t.pid);
        // CPU per answered request of the process under test: the cost the ratios come from, less skewed
        // than req/s by the load tools and the mock sharing the cores.
        const cpuUsPerRequest =
          r.requests > 0 ? (((await cpuMs(t.pid)) - cpuBefore) * 1000) / r.requests : NaN;
        results.set(key, [
          ...(results.get(key) ?? []),
          { ...r, rss: mem.rss, cpuUs: cpuUsPerRequest, ...(peakRss === undefined ? {} : { peakRss }) },
        ]);
        log(
          `round ${round}/${options.rounds} ${(t.target === "bare" ? "no-met" : t.target).padEnd(6)} ${t.scenario.id.padEnd(11)} ${fmt.rps(r.rps).padStart(7)} req/s` +
            `  p50 ${fmt.ms(r.p50Ms)} ms  p99 ${fmt.ms(r.p99Ms)} ms  rss ${fmt.mb(mem.rss / 2 ** 20)} MB  cpu ${fmt.rps(cpuUsPerRequest)} µs/req  errors ${r.errors}` +
            (r.sse === undefined
              ? ""
              : `  max gap ${fmt.ms(r.sse.maxGapMs)} ms  p99 gap ${fmt.ms(r.sse.p99GapMs)} ms  peak rss ${fmt.mb((peakRss ?? NaN) / 2 ** 20)} MB`) +
            (r.errors > 0 ? ` (${r.errorDetail})` : ""),
        );
        if (r.errors > 0) failures.push(`${key} round ${round}: ${r.errors} errors (${r.errorDetail})`);
        if (r.requests === 0) failures.push(`${key} round ${round}: no request completed`);
      }
    }
    // The gRPC error count by DATA bytes is an estimate; a last real call proves the server still
    // answers correctly after the load.
    for (const t of active.filter((a) => a.scenario.api === "grpc" && !targetDead(a))) {
      const check = await preflight(t.service.port, t.scenario, t.request);
      if (!check.ok) failures.push(`${t.target} ${t.scenario.id}: call after the load failed: ${check.why}`);
    }

    const serverPeak =
      server === undefined || isDead(server.child) ? undefined : await rssBytes(pidOf(server));
    const peerPeak = peer === undefined || isDead(peer.child) ? undefined : await rssBytes(pidOf(peer));
    const scraped = await scraper?.stop();
    // Metrics on must mean metrics recorded: the last scrape counts the chat calls the load made.
    if (scraped !== undefined && !scrapeShowsChatCalls(scraped.last)) {
      failures.push(`metrics: the last scrape (of ${scraped.scrapes}) shows no chat request`);
    }
    if (server !== undefined) await stopChild(server.child);
    if (bare !== undefined) await stopChild(bare.child);
    if (peer !== undefined) await stopChild(peer.child);
    await stopChild(floor.child);
    await stopChild(mock.child);

    let profile: string | undefined;
    if (server !== undefined && options.cpuProf) {
      const files = (await readdir(server.profileDir)).filter((f) => f.endsWith(".cpuprofile")).sort();
      const newest = files.at(-1);
      if (newest !== undefined) {
        const file = path.join(server.profileDir, newest);
        profile = [
          `CPU profile of the server (${path.relative(ROOT, file)}):`,
          "",
          formatProfileSummary(await summariseProfile(file)),
        ].join("\n");
      } else {
        profile = "No CPU profile was written (did the server exit cleanly on SIGTERM?).";
      }
    }
    const text = renderReport({
      plan,
      results,
      skipped,
      failures,
      rounds: options.rounds,
      duration: options.duration,
      warmup: options.warmup,
      nice: options.nice,
      pinned: pinning.enabled ? { testCpu: pinning.testCpu, otherCpus: pinning.otherCpus } : undefined,
      memory: serverCgroup.why,
      serverNodeOptions: server?.nodeOptions,
      scraped,
      compared: bare !== undefined,
      peer:
        peerSpec === undefined
          ? undefined
          : { ...peerSpec, peakRssMb: peerPeak === undefined ? undefined : peerPeak.hwm / 2 ** 20 },
      loadBefore,
      loadAfter: os.loadavg()[0] ?? NaN,
      machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.type()} ${os.release()}, Node ${process.version}`,
      command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
      serverPeakRssMb: serverPeak === undefined ? undefined : serverPeak.hwm / 2 ** 20,
      profile,
    });
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
    killChildren();
    await rm(scratch, { recursive: true, force: true });
    await removeCgroups();
  }
}

// SIGTERM too: `npm run bench` execs this file, so stopping npm sends it here, and the servers and load
// generators started for the run must not outlive it.
for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
] as const) {
  process.on(signal, () => {
    killChildren();
    process.exit(code);
  });
}

await main();
