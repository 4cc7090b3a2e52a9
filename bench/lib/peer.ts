// A published gateway measured in the same run as the server (`--peer`, issue 17): installed on first use
// into a cache folder outside the project (never a dependency of the project), started with the server's
// memory cgroup, pinning and NODE_OPTIONS, and pointed at the same mock provider. It gets the REST
// scenarios only: the calls an OpenAI client makes.
import { existsSync } from "node:fs";
import { mkdir, readFile, rename, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { freePort } from "./harness.ts";
import type { Service } from "./processes.ts";
import { run, startService } from "./processes.ts";
import type { Scenario } from "./scenarios.ts";

export interface PeerSpec {
  /** How the report names it. */
  title: string;
  package: string;
  version: string;
  /** The entry file inside the package (its `bin`). */
  bin: string;
  /** Arguments after the entry file; `port` is where it must listen. */
  args(port: number): string[];
  /** A GET on this path answers 200 once it is ready. */
  readyPath: string;
  /** The chat request for a scenario: path and headers (the body is the OpenAI body the floor sends). */
  request(mockBaseUrl: string): { path: string; headers: Record<string, string> };
  /** How the report describes the way it was run. */
  howRun: string;
}

export const PEERS = {
  portkey: {
    title: "Portkey AI gateway",
    package: "@portkey-ai/gateway",
    version: "1.15.2",
    bin: "build/start-server.js",
    // build/start-server.js reads --port=<n> (default 8787) and --headless (no web UI); it listens on all
    // interfaces and has no other switches. Node runs it as published (an ES module bundle).
    args: (port) => [`--port=${port}`, "--headless"],
    readyPath: "/",
    // Portkey's OpenAI route: the provider in x-portkey-provider, the provider's base URL in
    // x-portkey-custom-host (here the mock, with /delay/<ms> for the slow scenarios) and the provider key as
    // the caller's bearer token, which it forwards.
    request: (mockBaseUrl) => ({
      path: "/v1/chat/completions",
      headers: {
        authorization: "Bearer sk-bench-not-a-real-key",
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": mockBaseUrl,
      },
    }),
    howRun:
      "`node build/start-server.js --port=<port> --headless`, calls to `POST /v1/chat/completions` with " +
      "`x-portkey-provider: openai` and `x-portkey-custom-host: <mock>/v1`",
  },
} satisfies Record<string, PeerSpec>;

export type PeerName = keyof typeof PEERS;

/** Which scenarios the peer runs: the REST unary ones (a JSON call in, a JSON answer out). */
export function peerRuns(scenario: Scenario): boolean {
  return scenario.api === "rest";
}

export interface PeerRequestContext {
  spec: PeerSpec;
  mockPort: number;
}

export function peerRequest(
  context: PeerRequestContext,
  scenario: Scenario,
  body: Uint8Array,
): { path: string; body: Uint8Array; headers: Record<string, string> } {
  const delayPrefix = scenario.delayMs > 0 ? `/delay/${scenario.delayMs}` : "";
  const { path: urlPath, headers } = context.spec.request(
    `http://127.0.0.1:${context.mockPort}${delayPrefix}/v1`,
  );
  return { path: urlPath, body, headers };
}

export interface InstalledPeer {
  spec: PeerSpec;
  /** The package's folder. */
  packageDir: string;
  /** Whether this run installed it (else it was already in the cache). */
  installed: boolean;
}

/**
 * The peer's package in `cacheDir`, installed there first if it is not (npm, production dependencies only,
 * no install scripts: the package's postinstall runs patch-package, whose patches folder is not published).
 * Installed into a temporary folder and renamed, so an interrupted install is never taken for a finished one.
 */
export async function installPeer(spec: PeerSpec, cacheDir: string): Promise<InstalledPeer> {
  const dir = path.join(cacheDir, `${spec.package.replace(/^@/, "").replace("/", "-")}-${spec.version}`);
  const packageDir = path.join(dir, "node_modules", ...spec.package.split("/"));
  if (await installedVersionIs(packageDir, spec.version)) return { spec, packageDir, installed: false };
  await mkdir(cacheDir, { recursive: true });
  const temporary = `${dir}.partial-${process.pid}`;
  await rm(temporary, { recursive: true, force: true });
  await mkdir(temporary, { recursive: true });
  const result = await run("npm", [
    "install",
    "--prefix",
    temporary,
    "--no-save",
    "--no-package-lock",
    "--omit=dev",
    "--ignore-scripts",
    "--no-audit",
    "--no-fund",
    "--loglevel=error",
    `${spec.package}@${spec.version}`,
  ]);
  const temporaryPackage = path.join(temporary, "node_modules", ...spec.package.split("/"));
  if (result.code !== 0 || !(await installedVersionIs(temporaryPackage, spec.version))) {
    await rm(temporary, { recursive: true, force: true });
    throw new Error(
      `npm install ${spec.package}@${spec.version} failed (exit ${result.code}): ${(result.stderr + result.stdout).slice(-2000)}`,
    );
  }
  await rm(dir, { recursive: true, force: true });
  await rename(temporary, dir);
  return { spec, packageDir, installed: true };
}

async function installedVersionIs(packageDir: string, version: string): Promise<boolean> {
  const file = path.join(packageDir, "package.json");
  if (!existsSync(file)) return false;
  const manifest = JSON.parse(await readFile(file, "utf8")) as { version?: unknown };
  return manifest.version === version;
}

/**
 * Starts the peer like the server: inside `procs` (its own memory cgroup), with the same NODE_OPTIONS, a
 * minimal environment (no proxy variables, no provider keys) and `cwd` a scratch folder (it may write a
 * cache folder there).
 */
export async function startPeer(
  peer: InstalledPeer,
  procs: string | undefined,
  nodeOptions: string,
  cwd: string,
  stdoutFile: string | undefined,
): Promise<Service> {
  const port = await freePort();
  await mkdir(cwd, { recursive: true });
  return startService({
    name: `the peer (${peer.spec.package}@${peer.spec.version})`,
    argv: [process.execPath, path.join(peer.packageDir, peer.spec.bin), ...peer.spec.args(port)],
    env: {
      PATH: process.env["PATH"] ?? "",
      HOME: process.env["HOME"] ?? os.tmpdir(),
      NODE_ENV: "production",
      NODE_OPTIONS: nodeOptions,
    },
    cwd,
    procs,
    stdoutFile,
    port,
    readyPath: peer.spec.readyPath,
    hint: "its stdout goes to /dev/null",
  });
}
