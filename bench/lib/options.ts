// The command line of `npm run bench` (bench/README.md): parsing, defaults and the usage text.
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { OUT_DIR, SERVER_ENTRY } from "./paths.ts";
import { PEERS, type PeerName } from "./peer.ts";
import { SCENARIO_IDS } from "./scenarios.ts";

export type MetricsMode = "on" | "off" | "compare";

export interface Options {
  smoke: boolean;
  rounds: number;
  duration: number;
  warmup: number;
  slowConnections: number;
  /** Concurrent streams of the sse-1000 scenario. */
  sseStreams: number;
  /** Scenario ids (or keys such as slow-512) to run; undefined: all. */
  only: Set<string> | undefined;
  floorOnly: boolean;
  cpuProf: boolean;
  logLevel: string;
  /** Extra Node options for the server process (before its entry file). */
  serverNodeArgs: string[];
  serverLog: string | undefined;
  serverEnv: Record<string, string>;
  serverEntry: string;
  metrics: MetricsMode;
  pin: boolean;
  memoryLimitMib: number;
  out: string;
  nice: number | undefined;
  /** A published gateway measured in the same rounds on the REST scenarios (--peer). */
  peer: PeerName | undefined;
  /** Where the peer is installed (outside the project's dependencies). */
  peerDir: string;
}

export const USAGE = `usage: npm run bench -- [options]
  --smoke               one short round of every scenario (CI); exit 0 only if all ran without errors
  --rounds <n>          measured rounds (default 3)
  --duration <s>        seconds per measured run (default 5)
  --warmup <s>          seconds of unmeasured load per target and scenario before round 1 (default 2)
  --slow-connections <n> concurrent calls in the slow-provider scenarios (default 512)
  --sse-streams <n>     concurrent SSE streams in the sse-1000 scenario, one wave per round (default 1000)
  --only <ids>          comma-separated scenario ids (${SCENARIO_IDS.join(",")})
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
  --peer <name>         also measure a published gateway on the REST scenarios (rest-1, rest-32, slow-512), against
                        the same mock, in the same rounds, with the server's cgroup and pinning: ${Object.keys(PEERS).join(", ")}
                        (${Object.values(PEERS)
                          .map((p) => `${p.package}@${p.version}`)
                          .join(", ")}), installed on first use into --peer-dir, never into the project
  --peer-dir <dir>      where --peer installs the gateway (default \${XDG_CACHE_HOME:-~/.cache}/api-key-server-bench)
  --pin <on|off>        on (with 2+ CPUs and taskset): the floor and the server run alone on the last CPU, the mock,
                        the load tools and the harness on the others; the ratio is then the floor's CPU per request
                        over the server's. off (default, as the targets were set): all share the CPUs
  --memory-limit <MiB>  run the server and the floor in a memory cgroup of this size (default 512, Cloud Run's
                        default instance, whose limit Node sizes its heap by); 0: unconstrained. Needs root and a
                        writable cgroup memory controller, else the run says it was unconstrained
  --nice=<n>            run the harness and every process it starts at this nice value (e.g. --nice=-10, needs
                        root): on a shared host it keeps other work from skewing the numbers
  --out <file>          also write the markdown report there (default bench/out/last-run.md)`;

export function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(1);
}

export function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

function defaultPeerDir(): string {
  const cache = process.env["XDG_CACHE_HOME"] || path.join(os.homedir(), ".cache");
  return path.join(cache, "api-key-server-bench");
}

export function readOptions(argv: string[] = process.argv.slice(2)): Options {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        smoke: { type: "boolean", default: false },
        rounds: { type: "string" },
        duration: { type: "string" },
        warmup: { type: "string" },
        "slow-connections": { type: "string" },
        "sse-streams": { type: "string" },
        only: { type: "string" },
        "floor-only": { type: "boolean", default: false },
        "cpu-prof": { type: "boolean", default: false },
        "log-level": { type: "string", default: "info" },
        "server-log": { type: "string" },
        "server-env": { type: "string", multiple: true, default: [] },
        "server-entry": { type: "string", default: SERVER_ENTRY },
        "server-node-arg": { type: "string", multiple: true, default: [] },
        metrics: { type: "string", default: "on" },
        peer: { type: "string" },
        "peer-dir": { type: "string" },
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
  const positive = (name: string, raw: string | undefined, fallback: number): number => {
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || n <= 0) fail(`--${name} must be a positive number, got "${raw}"`);
    return n;
  };
  const smoke = values.smoke;
  const serverEnv: Record<string, string> = {};
  for (const pair of values["server-env"]) {
    const eq = pair.indexOf("=");
    if (eq <= 0) fail(`--server-env takes KEY=VALUE, got "${pair}"`);
    serverEnv[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const metrics = values.metrics;
  if (metrics !== "on" && metrics !== "off" && metrics !== "compare")
    fail(`--metrics takes on, off or compare, got "${metrics}"`);
  const peer = values.peer;
  if (peer !== undefined && !Object.hasOwn(PEERS, peer))
    fail(`--peer takes ${Object.keys(PEERS).join(" or ")}, got "${peer}"`);
  if (peer !== undefined && values["floor-only"]) fail("--peer and --floor-only do not go together");
  const nice = values.nice === undefined ? undefined : Number(values.nice);
  if (nice !== undefined && !Number.isInteger(nice)) fail(`--nice takes an integer, got "${values.nice}"`);
  return {
    smoke,
    rounds: Math.round(positive("rounds", values.rounds, smoke ? 1 : 3)),
    duration: Math.round(positive("duration", values.duration, smoke ? 1 : 5)),
    warmup: values.warmup === "0" ? 0 : Math.round(positive("warmup", values.warmup, smoke ? 0 : 2)),
    // Smoke proves the script works, not capacity: 512 connections in a 1 s run mostly measure connect time.
    slowConnections: Math.round(positive("slow-connections", values["slow-connections"], smoke ? 64 : 512)),
    sseStreams: Math.round(positive("sse-streams", values["sse-streams"], smoke ? 50 : 1000)),
    only: values.only === undefined ? undefined : new Set(values.only.split(",").map((s) => s.trim())),
    floorOnly: values["floor-only"],
    cpuProf: values["cpu-prof"],
    logLevel: values["log-level"],
    serverNodeArgs: values["server-node-arg"],
    serverLog: values["server-log"],
    serverEnv,
    serverEntry: path.resolve(values["server-entry"]),
    metrics,
    pin:
      values.pin === "on"
        ? true
        : values.pin === "off"
          ? false
          : fail(`--pin takes on or off, got "${values.pin}"`),
    memoryLimitMib:
      values["memory-limit"] === "0" ? 0 : Math.round(positive("memory-limit", values["memory-limit"], 512)),
    out: values.out,
    nice,
    peer: peer as PeerName | undefined,
    peerDir: path.resolve(values["peer-dir"] ?? defaultPeerDir()),
  };
}
