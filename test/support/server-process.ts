import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

/**
 * Runs the real server process (`src/main.ts`, straight from the TypeScript sources through
 * test/support/ts-hooks.mjs) as a child of the test, for tests that need a process boundary: two servers
 * sharing one Redis, signals, exit codes, start-up failures.
 */

/** The repository root: the default working directory of the child (main.ts reads `./config` from it). */
export const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const hooks = fileURLToPath(new URL("./ts-hooks.mjs", import.meta.url));
const mainTs = fileURLToPath(new URL("../../src/main.ts", import.meta.url));

/** The command line of the child: the Node running the tests (24, from node_modules), never the system one. */
export const serverCommand: readonly string[] = [
  process.execPath,
  "--experimental-transform-types",
  "--no-warnings",
  "--import",
  hooks,
  mainTs,
];

export interface ServerProcessOptions {
  /**
   * The child's environment, on top of a clean base: the parent's environment WITHOUT `PORT`, `REDIS_URL`,
   * `USE_SECRET_MANAGER` and `API_KEY_SERVER_*` (so the developer's shell cannot leak into a test), plus
   * `PORT=0` and `API_KEY_SERVER_HOST=127.0.0.1` unless given here. A value of `undefined` removes a variable.
   */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Working directory (default: the repository root). */
  readonly cwd?: string;
  /** Another command line (default {@link serverCommand}), e.g. the compiled server as the image runs it. */
  readonly command?: readonly string[];
  /** Run the child as this user and group (the caller must be root), e.g. the image's unprivileged user. */
  readonly user?: { readonly uid: number; readonly gid: number };
  /** How long to wait for the "Listening on" line (default 20 s); the child is killed on timeout. */
  readonly readyTimeoutMs?: number;
  /**
   * Also wait for the "Secrets loaded, ready" line before resolving (default false). The server opens
   * its port only after the first secret load, so that line comes before "Listening on" and this
   * changes nothing; kept for tests written when the order was the other way round.
   */
  readonly waitForSecrets?: boolean;
}

export interface ServerProcess {
  readonly port: number;
  /** `http://HOST:PORT` (HOST from `API_KEY_SERVER_HOST`, default 127.0.0.1). */
  readonly url: string;
  /** Every stdout line so far (the server's JSON log), live: it keeps growing while the child runs. */
  readonly lines: string[];
  /** Every stderr line so far, live. */
  readonly stderr: string[];
  /** Resolves when the child has exited (never rejects). */
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  /** Sends a signal (default SIGTERM); a no-op once the child has exited. */
  kill(signal?: NodeJS.Signals): void;
  /**
   * Resolves with the first stdout line (already seen or still to come) for which `match` holds; rejects
   * after `timeoutMs` (default 10 s) or when the child exits first.
   */
  waitForLine(match: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  /** The stdout lines that are JSON objects, parsed (the structured log). */
  logs(): Record<string, unknown>[];
}

export interface RunServerProcessOptions {
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly cwd?: string;
  readonly command?: readonly string[];
  readonly user?: { readonly uid: number; readonly gid: number };
  /** The child is killed (SIGKILL) and the promise rejects when it has not exited within this time. */
  readonly timeoutMs: number;
}

export interface ServerProcessResult {
  readonly code: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

/**
 * Starts `src/main.ts` and resolves once it has logged `Listening on HOST:PORT` (with the port it really
 * bound, so `PORT=0` works), and with `waitForSecrets` also "Secrets loaded, ready". Rejects, with the child's stderr in the message, if it exits or times out
 * first. The caller owns the process: `kill()` it (and await `exited`) in `afterAll`.
 */
export async function startServerProcess(options: ServerProcessOptions = {}): Promise<ServerProcess> {
  const env = childEnv(options.env);
  const child = spawnServer(env, options);
  const lines: string[] = [];
  const stderr: string[] = [];
  const waiters = new Set<() => void>();
  collectLines(child, "stdout", lines, () => {
    for (const wake of waiters) wake();
  });
  collectLines(child, "stderr", stderr, () => undefined);
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    child.once("exit", (code, signal) => {
      running.delete(child);
      for (const wake of waiters) wake();
      resolve({ code, signal });
    });
  });
  let done = false;
  void exited.then(() => {
    done = true;
  });

  const waitForLine = (match: (line: string) => boolean, timeoutMs = 10_000): Promise<string> =>
    new Promise<string>((resolve, reject) => {
      let seen = 0;
      const check = (): void => {
        for (; seen < lines.length; seen++) {
          const line = lines[seen] ?? "";
          if (match(line)) {
            finish();
            resolve(line);
            return;
          }
        }
        if (done || child.exitCode !== null || child.signalCode !== null) {
          finish();
          reject(new Error(`server process exited before the expected line\n${describe(lines, stderr)}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no matching line within ${timeoutMs} ms\n${describe(lines, stderr)}`));
      }, timeoutMs);
      const finish = (): void => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });

  const kill = (signal: NodeJS.Signals = "SIGTERM"): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };

  let port: number;
  try {
    const listening = await waitForLine((line) => {
      const message = parseLine(line)?.["message"];
      return typeof message === "string" && message.startsWith("Listening on ");
    }, options.readyTimeoutMs ?? 20_000);
    const value = parseLine(listening)?.["port"];
    if (typeof value !== "number") throw new Error(`no port in the Listening line: ${listening}`);
    port = value;
    if (options.waitForSecrets === true) {
      await waitForLine(
        (line) => parseLine(line)?.["message"] === "Secrets loaded, ready",
        options.readyTimeoutMs ?? 20_000,
      );
    }
  } catch (err) {
    kill("SIGKILL");
    await exited;
    throw err;
  }

  const host = env["API_KEY_SERVER_HOST"] ?? "127.0.0.1";
  return {
    port,
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
    lines,
    stderr,
    exited,
    kill,
    waitForLine,
    logs: () => lines.map(parseLine).filter((entry): entry is Record<string, unknown> => entry !== undefined),
  };
}

/**
 * Runs `src/main.ts` to completion, for processes expected to exit on their own (bad configuration,
 * secrets that fail to load). Rejects if the child is still running after `timeoutMs` (it is killed).
 */
export async function runServerProcess(options: RunServerProcessOptions): Promise<ServerProcessResult> {
  const child = spawnServer(childEnv(options.env), options);
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  return new Promise<ServerProcessResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`server process still running after ${options.timeoutMs} ms\n${stdout}\n${stderr}`));
    }, options.timeoutMs);
    // "close", not "exit": every byte of stdout and stderr has been read by then.
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function spawnServer(
  env: NodeJS.ProcessEnv,
  options: Pick<ServerProcessOptions, "cwd" | "command" | "user">,
): ChildProcess {
  const [command = process.execPath, ...args] = options.command ?? serverCommand;
  const child = spawn(command, args, {
    cwd: options.cwd ?? repoRoot,
    env,
    stdio: ["ignore", "pipe", "pipe"],
    ...(options.user ?? {}),
  });
  running.add(child);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // A test that failed before its afterAll must not leave servers behind.
    process.once("exit", () => {
      for (const leftover of running) leftover.kill("SIGKILL");
    });
  }
  return child;
}

function childEnv(extra: Readonly<Record<string, string | undefined>> | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (
      name === "PORT" ||
      name === "REDIS_URL" ||
      name === "USE_SECRET_MANAGER" ||
      name.startsWith("API_KEY_SERVER_") ||
      name.startsWith("VITEST") ||
      name === "NODE_OPTIONS"
    ) {
      continue;
    }
    env[name] = value;
  }
  env["PORT"] = "0";
  env["API_KEY_SERVER_HOST"] = "127.0.0.1";
  for (const [name, value] of Object.entries(extra ?? {})) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  return env;
}

function collectLines(
  child: ChildProcess,
  stream: "stdout" | "stderr",
  into: string[],
  onLine: () => void,
): void {
  let partial = "";
  const source = child[stream];
  if (source === null) return;
  source.setEncoding("utf8");
  source.on("data", (chunk: string) => {
    const parts = (partial + chunk).split("\n");
    partial = parts.pop() ?? "";
    for (const part of parts) into.push(part);
    if (parts.length > 0) onLine();
  });
  source.on("end", () => {
    if (partial !== "") into.push(partial);
    partial = "";
    onLine();
  });
}

function parseLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

function describe(lines: readonly string[], stderr: readonly string[]): string {
  return `--- stdout ---\n${lines.slice(-30).join("\n")}\n--- stderr ---\n${stderr.slice(-30).join("\n")}`;
}
