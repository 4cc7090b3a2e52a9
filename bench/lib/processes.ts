// The processes the benchmark starts: forked helpers (mock, floor), the services under test (the server, the
// peer gateway) inside their memory cgroups, short-lived tools (wrk, h2load, taskset, npm); CPU pinning;
// and what /proc says about a process (CPU time, resident memory).
import type { ChildProcess } from "node:child_process";
import { fork, spawn } from "node:child_process";
import { once } from "node:events";
import { openSync } from "node:fs";
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { clearInterval, clearTimeout, setInterval, setTimeout } from "node:timers";
import { setTimeout as sleep } from "node:timers/promises";
import { inCgroup, joinCgroup } from "./harness.ts";
import { BENCH_DIR } from "./paths.ts";

/** Every child still running; killed on exit and on Ctrl-C. */
export const children = new Set<ChildProcess>();

/** Kills every child the harness started (on the way out, whatever happened). */
export function killChildren(): void {
  for (const child of children) child.kill("SIGKILL");
}

/** CPU sets for --pin: the process under test alone on the last CPU, everything else on the others. */
export const cpuCount = os.cpus().length;
export const pinning = {
  enabled: false,
  testCpu: String(cpuCount - 1),
  otherCpus: cpuCount > 2 ? `0-${cpuCount - 2}` : "0",
};

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end, collecting its output (rejects only when it cannot start). */
export function run(command: string, args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (t: string) => (stdout += t));
    child.stderr.setEncoding("utf8").on("data", (t: string) => (stderr += t));
    child.on("error", reject);
    child.on("exit", (code) => {
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Pins every thread of a running process to `cpus` (no-op when pinning is off). */
export async function pin(pid: number | undefined, cpus: string): Promise<void> {
  if (!pinning.enabled || pid === undefined) return;
  const result = await run("taskset", ["-a", "-p", "-c", cpus, String(pid)]);
  if (result.code !== 0) throw new Error(`taskset failed for pid ${pid}: ${result.stderr}`);
}

/** The command and arguments of a load tool, pinned to the load CPUs when pinning is on. */
export function loadCommand(command: string, args: string[]): [string, string[]] {
  return pinning.enabled ? ["taskset", ["-c", pinning.otherCpus, command, ...args]] : [command, args];
}

export interface Helper {
  child: ChildProcess;
  port: number;
}

/** Forks a helper of bench/lib (mock provider, raw forwarder), optionally in a cgroup; resolves when it listens. */
export async function forkHelper(file: string, args: string[], procs?: string): Promise<Helper> {
  // In a cgroup: sh joins it, then execs Node (with the IPC channel fork() set up) and the helper.
  const child = fork(path.join(BENCH_DIR, "lib", file), args, {
    stdio: ["ignore", "ignore", "inherit", "ipc"],
    ...(procs === undefined
      ? {}
      : { execPath: "/bin/sh", execArgv: [...joinCgroup(procs), process.execPath] }),
  });
  children.add(child);
  const [message] = (await Promise.race([
    once(child, "message"),
    once(child, "exit").then(([code]) => {
      throw new Error(`${file} exited with code ${String(code)} before it was ready`);
    }),
  ])) as [{ port: number }];
  return { child, port: message.port };
}

export interface Service {
  child: ChildProcess;
  port: number;
  /** Why the process is gone, with the end of its stderr. */
  describeExit(): string;
}

export interface ServiceSpec {
  /** For messages: "the server", "the peer". */
  name: string;
  /** The command line (Node and its arguments); started inside `procs` when given. */
  argv: string[];
  env: Record<string, string>;
  /** Working directory; default: the harness's. */
  cwd?: string;
  procs: string | undefined;
  /** A file for the process's stdout; undefined: /dev/null. */
  stdoutFile: string | undefined;
  port: number;
  /** A GET on this path answers 200 once the service is ready. */
  readyPath: string;
  /** What to suggest when it dies before it is ready. */
  hint: string;
}

/** Starts a service under test and waits until GET readyPath answers 200 (at most 30 s). */
export async function startService(spec: ServiceSpec): Promise<Service> {
  const stdout = spec.stdoutFile === undefined ? "ignore" : openForAppend(spec.stdoutFile);
  const [command, ...args] = inCgroup(spec.procs, spec.argv);
  if (command === undefined) throw new Error(`no command line for ${spec.name}`);
  const child = spawn(command, args, {
    env: spec.env,
    stdio: ["ignore", stdout, "pipe"],
    ...(spec.cwd === undefined ? {} : { cwd: spec.cwd }),
  });
  children.add(child);
  let stderr = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (text: string) => {
    stderr = (stderr + text).slice(-4000);
  });
  let exited = false;
  child.once("exit", () => {
    exited = true;
  });
  const describeExit = (): string =>
    `${spec.name} exited (code ${child.exitCode}, signal ${child.signalCode})` +
    (stderr === "" ? "" : `; stderr:\n${stderr}`);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) {
      throw new Error(
        `${spec.name} exited with code ${child.exitCode} before GET ${spec.readyPath} answered 200` +
          (stderr === "" ? ` (${spec.hint})` : `; stderr:\n${stderr}`),
      );
    }
    try {
      const res = await fetch(`http://127.0.0.1:${spec.port}${spec.readyPath}`, {
        signal: AbortSignal.timeout(1000),
      });
      await res.arrayBuffer();
      if (res.status === 200) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`${spec.name} did not answer GET ${spec.readyPath} with 200 within 30 s`);
    }
    await sleep(100);
  }
  return { child, port: spec.port, describeExit };
}

function openForAppend(file: string): number {
  // A plain fd (not a FileHandle) because spawn's stdio takes a descriptor; the child keeps it open.
  return openSync(file, "a");
}

export function isDead(child: ChildProcess | undefined): boolean {
  return child === undefined || child.exitCode !== null || child.signalCode !== null;
}

/** SIGTERM, then SIGKILL after `timeoutMs`; resolves when the process is gone. */
export async function stopChild(child: ChildProcess, timeoutMs = 15_000): Promise<void> {
  if (isDead(child)) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  await exited;
  clearTimeout(timer);
  children.delete(child);
}

/** CPU time (user + system) a process has used so far, in ms (Linux clock ticks of 10 ms). */
export async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which is in parentheses and may hold spaces: utime and stime are 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/**
 * Samples a process's VmRSS every `intervalMs` until `stop()`, which resolves with the largest sample in
 * bytes (VmHWM cannot say: it is the peak over the process's whole life).
 */
export function sampleRss(pid: number, intervalMs: number): { stop(): Promise<number> } {
  let peak = NaN;
  const take = async (): Promise<void> => {
    const { rss } = await rssBytes(pid).catch(() => ({ rss: NaN }));
    if (Number.isFinite(rss) && !(rss <= peak)) peak = rss;
  };
  const timer = setInterval(() => void take(), intervalMs);
  return {
    async stop() {
      clearInterval(timer);
      await take();
      return peak;
    },
  };
}

/** Resident memory now (VmRSS) and at its peak (VmHWM), in bytes. */
export async function rssBytes(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = (name: string): number =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}
