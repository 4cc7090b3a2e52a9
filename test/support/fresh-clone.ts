import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join, relative } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { repoRoot } from "./server-process.js";

/**
 * Runs documentation blocks as a newcomer pastes them: bash, in a fresh copy of the repository (what a
 * clone holds: no dist/, no generated Python classes, no git-ignored config files), with the user's PATH
 * (no node_modules/.bin, so the system Node runs npm itself, as it does for them).
 *
 * Two substitutions, and only these, both said here: `npm ci` is answered by a link to the tested
 * node_modules (a real install would take minutes and the network; npm ci never runs), and the ports the
 * documentation names are replaced by free ones (the host is shared; the text is otherwise as written).
 */

/** Paths a clone does not have: build output, installs, and what .gitignore keeps out. */
const notInClone = [
  ".git",
  "node_modules",
  "dist",
  "coverage",
  "artifacts",
  "bench/out",
  "examples/python/gen",
  "config/openai_api_keys.json",
  "config/jwt_public_keys.json",
  "config/hmac_secrets.json",
  "config/dev_jwt_private_key.json",
];

export interface FreshClone {
  readonly dir: string;
  remove(): Promise<void>;
}

/** A copy of the repository's files as a clone has them, with node_modules linked to the tested install. */
export async function freshClone(): Promise<FreshClone> {
  const base = await mkdtemp(join(tmpdir(), "aks-clone-"));
  const dir = join(base, "api-key-server");
  await cp(repoRoot, dir, {
    recursive: true,
    filter: (source) => {
      const path = relative(repoRoot, source);
      return !notInClone.some((skip) => path === skip || path.startsWith(`${skip}/`));
    },
  });
  await symlink(join(repoRoot, "node_modules"), join(dir, "node_modules"));
  // `npm ci` must not run on the link: it would empty the tested install.
  const bin = join(base, "bin");
  await mkdir(bin);
  const npm = join(bin, "npm");
  await writeFile(
    npm,
    `#!/bin/sh
if [ "$1" = ci ]; then
  echo "(test: npm ci answered by a link to the tested node_modules)"
  exit 0
fi
exec ${JSON.stringify(realNpm())} "$@"
`,
  );
  await chmod(npm, 0o755);
  return { dir, remove: () => rm(base, { recursive: true, force: true }) };
}

/** The first `npm` on the user's PATH (the system one, as a newcomer has it). */
export function realNpm(): string {
  for (const entry of userPath().split(delimiter)) {
    const candidate = join(entry, "npm");
    if (entry !== "" && existsSync(candidate)) return candidate;
  }
  throw new Error("no npm on PATH");
}

/** PATH without any node_modules/.bin (npm and vitest put theirs first) and without our npm shim. */
export function userPath(): string {
  return (process.env["PATH"] ?? "")
    .split(delimiter)
    .filter((entry) => !entry.includes("node_modules/.bin") && !entry.includes("node-gyp-bin"))
    .join(delimiter);
}

/** The fenced blocks of one language in `section` of a Markdown file of the repository. */
export async function markdownBlocks(
  file: string,
  section: { readonly from: string; readonly to?: string },
  language = "sh",
): Promise<string[]> {
  const text = await readFile(join(repoRoot, file), "utf8");
  const start = text.indexOf(section.from);
  if (start < 0) throw new Error(`${file}: no ${JSON.stringify(section.from)}`);
  const end = section.to === undefined ? text.length : text.indexOf(section.to, start + 1);
  const body = text.slice(start, end < 0 ? text.length : end);
  return [...body.matchAll(new RegExp(`\`\`\`${language}\\n([\\s\\S]*?)\`\`\``, "g"))].map((m) => m[1] ?? "");
}

/** A port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

export interface BashResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface BashOptions {
  readonly cwd: string;
  readonly env?: Record<string, string>;
}

/**
 * Runs `script` with bash in `cwd`, in a process group of its own; once bash is done, whatever it left
 * running (`npm start &`) is sent SIGTERM, then SIGKILL if still there after 10 s. The environment is the
 * user's: no npm_*, NODE_*, VITEST*, PORT, WEB_PORT, REDIS_URL or API_KEY_SERVER_* of the test run, plus `env`.
 */
export async function runBash(
  script: string,
  options: BashOptions & { readonly timeoutMs: number },
): Promise<BashResult> {
  const bash = startBash(script, options);
  const timer = setTimeout(() => signalGroup(bash.group, "SIGKILL"), options.timeoutMs);
  const code = await bash.exited;
  clearTimeout(timer);
  await endGroup(bash.group);
  return { code, stdout: bash.stdout(), stderr: bash.stderr() };
}

export interface RunningBash {
  /** The process group of bash and everything it started. */
  readonly group: number;
  readonly exited: Promise<number | null>;
  stdout(): string;
  stderr(): string;
  /** Ends the whole group (SIGTERM, SIGKILL after 10 s) and waits until none of it runs. */
  stop(): Promise<void>;
}

/** Like runBash, for a script that keeps running (a server in the foreground): the caller stops it. */
export function startBash(script: string, options: BashOptions): RunningBash {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (
      /^(npm_|VITEST|API_KEY_SERVER_|NODE_|INIT_CWD$|PORT$|WEB_PORT$|REDIS_URL$|USE_SECRET_MANAGER$|TOKEN$)/.test(
        name,
      )
    ) {
      continue;
    }
    env[name] = value;
  }
  env["PATH"] = `${join(options.cwd, "..", "bin")}${delimiter}${userPath()}`;
  Object.assign(env, options.env);
  const child = spawn("bash", ["-c", script], {
    cwd: options.cwd,
    env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const group = child.pid;
  if (group === undefined) throw new Error("bash did not start");
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  return { group, exited, stdout: () => stdout, stderr: () => stderr, stop: () => endGroup(group) };
}

function signalGroup(group: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-group, signal);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM to what is left of the group, then waits (SIGKILL after 10 s) until none of it runs. */
export async function endGroup(group: number): Promise<void> {
  if (!signalGroup(group, "SIGTERM")) return;
  const deadline = performance.now() + 10_000;
  while (signalGroup(group, 0)) {
    if (performance.now() > deadline) signalGroup(group, "SIGKILL");
    await sleep(50);
  }
}
