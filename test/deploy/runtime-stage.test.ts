import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestKey, mintJwt } from "../support/auth-keys.js";
import { parseCopy, parseDockerfile, parseEnv, type Stage } from "../support/dockerfile.js";
import { curl } from "../support/server-clients.js";
import { repoRoot, startServerProcess, type ServerProcess } from "../support/server-process.js";

/**
 * Issue 16.3: the image's runtime stage, proven without a Docker engine. The Dockerfile is read and its
 * stages are reproduced in a temporary folder:
 *  - `deps`: its COPY and RUN lines run as written (`npm ci --omit=dev`, offline from npm's cache when it can);
 *  - `build`: its COPY lines and `npm run build` as written; its `npm ci` is the repository's own
 *    node_modules (installed from the same lockfile), linked instead of installed again;
 *  - the runtime stage: exactly its COPY --from lines (the list of shipped paths — there is no other copy of
 *    it), its ENV, and its CMD, run as an unprivileged user (root drops to `nobody`, as the image's USER node
 *    is not root) with the shipped files not writable by that user, as in the image.
 * The image's Node is 24; so is the Node running this test, which stands in for it.
 */

const dockerfile = parseDockerfile(await readFile(join(repoRoot, "Dockerfile"), "utf8"));
const runtime = dockerfile.at(-1) as Stage;
const imageEnv = Object.assign(
  {},
  ...runtime.instructions.filter((i) => i.keyword === "ENV").map((i) => parseEnv(i.args)),
) as Record<string, string>;
const imageUser = runtime.instructions.find((i) => i.keyword === "USER")?.args;
const cmd = JSON.parse(runtime.instructions.find((i) => i.keyword === "CMD")?.args ?? "null") as string[];
/**
 * The image's Node: a copy of the Node running this test in a folder every user can reach. The repository's
 * own `node_modules/node` may sit under a folder only its owner can enter (a `mktemp -d` clone), which the
 * unprivileged server user could not execute from.
 */
let nodeDir: string;
/** Who runs the server: `nobody` when the test runs as root (CI), else the test's own unprivileged user. */
const user = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : undefined;

function sh(command: string, cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("sh", ["-c", command], { cwd, env, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${command} failed in ${cwd}: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

/** Runs a build stage's instructions in `dir` (the stage's WORKDIR), from the repository as build context. */
async function reproduceStage(stage: Stage, dir: string): Promise<void> {
  for (const { keyword, args } of stage.instructions) {
    if (keyword === "WORKDIR") continue;
    if (keyword === "COPY") {
      const { from, sources, dest } = parseCopy(args);
      if (from !== undefined) throw new Error(`stage ${stage.name}: COPY --from is not reproduced here`);
      for (const source of sources) {
        const target = dest.endsWith("/") ? join(dir, dest, posix.basename(source)) : join(dir, dest);
        await cp(join(repoRoot, source), target, { recursive: true });
      }
    } else if (keyword === "RUN") {
      if (args === "npm ci --no-audit --no-fund") {
        await symlink(join(repoRoot, "node_modules"), join(dir, "node_modules"), "dir");
      } else {
        await sh(args, dir, { ...process.env, npm_config_prefer_offline: "true" });
      }
    } else {
      throw new Error(`stage ${stage.name}: ${keyword} is not reproduced; extend runtime-stage.test.ts`);
    }
  }
}

let root: string;
let app: string;
let configDir: string;
let home: string;
let server: ServerProcess | undefined;

const serverEnv = (): Record<string, string> => ({
  // What the image sets, then what Cloud Run sets (PORT) and what this test needs on top.
  ...imageEnv,
  PORT: "0",
  API_KEY_SERVER_HOST: "127.0.0.1",
  API_KEY_SERVER_CONFIG_DIR: configDir,
  HOME: home,
  // The image's Node (24) is the `node` on its PATH.
  PATH: `${nodeDir}:/usr/local/bin:/usr/bin:/bin`,
});

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "aks-image-"));
  await chmod(root, 0o755);
  nodeDir = join(root, "node-bin");
  await mkdir(nodeDir, { mode: 0o755 });
  await cp(process.execPath, join(nodeDir, "node"));
  await chmod(join(nodeDir, "node"), 0o755);
  const stages = new Map(dockerfile.filter((s) => s.name !== undefined).map((s) => [s.name, s]));
  for (const [name, stage] of stages) {
    const dir = join(root, `stage-${name}`);
    await mkdir(dir);
    await reproduceStage(stage, dir);
  }

  app = join(root, "app");
  await mkdir(app);
  for (const { keyword, args } of runtime.instructions) {
    if (keyword === "COPY") {
      const { from, flags, sources, dest } = parseCopy(args);
      if (from === undefined || !stages.has(from))
        throw new Error(`runtime COPY must be --from a stage: ${args}`);
      if (flags.some((f) => f.startsWith("--chown")))
        throw new Error(`runtime COPY gives files to the user: ${args}`);
      for (const source of sources) {
        if (!source.startsWith("/app/")) throw new Error(`runtime COPY from outside /app: ${args}`);
        await cp(join(root, `stage-${from}`, source.slice("/app/".length)), join(app, dest), {
          recursive: true,
          dereference: true,
        });
      }
    } else if (!["ENV", "WORKDIR", "USER", "EXPOSE", "CMD"].includes(keyword)) {
      throw new Error(`runtime stage: ${keyword} is not reproduced; extend runtime-stage.test.ts`);
    }
  }
  // As in the image (root-owned files, USER node): the server's user cannot write anything it ships.
  await sh("chmod -R a-w,a+rX .", app);

  configDir = join(root, "config");
  home = join(root, "home");
  await mkdir(configDir, { mode: 0o755 });
  await mkdir(home, { mode: 0o777 });
  await chmod(home, 0o777);
}, 300_000);

afterAll(async () => {
  server?.kill("SIGKILL");
  await server?.exited;
  await sh("chmod -R u+w .", root).catch(() => undefined);
  await rm(root, { recursive: true, force: true });
});

describe("the Dockerfile's runtime stage", () => {
  it("is only ENV, WORKDIR, COPY --from, USER (not root), EXPOSE and CMD", () => {
    expect(runtime.instructions.map((i) => i.keyword)).toEqual(
      expect.arrayContaining(["ENV", "WORKDIR", "COPY", "USER", "CMD"]),
    );
    expect(imageUser).toBeDefined();
    expect(["root", "0"]).not.toContain(imageUser);
    expect(imageEnv).toMatchObject({ NODE_ENV: "production", PORT: "8080" });
    expect(cmd).toEqual(["node", "dist/src/main.js"]);
  });

  it("ships exactly the copied paths, with production dependencies only", async () => {
    const copied = runtime.instructions
      .filter((i) => i.keyword === "COPY")
      .map((i) => parseCopy(i.args).dest.replace(/^\.\//, ""));
    expect((await readdir(app)).sort()).toEqual([...copied].sort());
    const lock = JSON.parse(await readFile(join(repoRoot, "package-lock.json"), "utf8")) as {
      packages: Record<string, { dev?: boolean }>;
    };
    const devOnly = Object.entries(lock.packages)
      .filter(([path, entry]) => path.startsWith("node_modules/") && entry.dev === true)
      .map(([path]) => path);
    expect(devOnly.length).toBeGreaterThan(0);
    expect(devOnly.filter((path) => existsSync(join(app, path)))).toEqual([]);
    // Production dependencies are all there.
    const pkg = JSON.parse(await readFile(join(app, "package.json"), "utf8")) as {
      dependencies: Record<string, string>;
    };
    for (const name of Object.keys(pkg.dependencies))
      expect(existsSync(join(app, "node_modules", name))).toBe(true);
    expect(existsSync(join(app, "dist/src/main.js"))).toBe(true);
    expect(existsSync(join(app, "src"))).toBe(false);
  });
});

describe("the image's server, as its CMD runs it", () => {
  let token: string;

  beforeAll(async () => {
    const key = await makeTestKey("image-key", "ES256");
    token = await mintJwt(key, { claims: { sub: "svc-image", products: ["product-img"] } });
    await writeFile(
      join(configDir, "openai_api_keys.json"),
      JSON.stringify({ "product-img": { providers: { echo: { models: ["echo-1"] } } } }),
    );
    await writeFile(join(configDir, "jwt_public_keys.json"), JSON.stringify({ keys: [key.publicJwk] }));
    await sh("chmod a+r *", configDir);
    const [program = "", ...args] = cmd;
    server = await startServerProcess({
      command: [program === "node" ? join(nodeDir, "node") : program, ...args],
      cwd: app,
      env: serverEnv(),
      ...(user !== undefined ? { user } : {}),
      waitForSecrets: true,
      readyTimeoutMs: 30_000,
    });
  }, 60_000);

  it("answers /health with 200 ok", async () => {
    const res = await curl([`${server?.url}/health`]);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ status: "ok", products: 1 });
  });

  it("answers one chat call on echo with a test key", async () => {
    const res = await curl([
      "-H",
      `authorization: Bearer ${token}`,
      "-H",
      "content-type: application/json",
      "--data-binary",
      JSON.stringify({ model: "echo-1", messages: [{ role: "user", content: "from the image" }] }),
      `${server?.url}/v1/chat/product-img`,
    ]);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({
      object: "chat.completion",
      choices: [{ message: { role: "assistant", content: "from the image" } }],
    });
  });

  it("runs the CLI inside it: --help, keygen --stdout, keygen into a writable folder, a clear error otherwise", async () => {
    const cli = (args: string): Promise<{ code: number; stdout: string; stderr: string }> =>
      new Promise((resolve) => {
        execFile(
          "sh",
          ["-c", `npm run -s cli -- ${args}`],
          { cwd: app, env: { ...serverEnv() }, ...(user ?? {}) },
          (err, stdout, stderr) =>
            resolve({ code: typeof err?.code === "number" ? err.code : 0, stdout, stderr }),
        );
      });

    const help = await cli("token --help");
    expect(help).toMatchObject({ code: 0, stderr: "" });
    expect(help.stdout).toMatch(/^Usage: npm run cli -- token /);

    const printed = await cli("keygen --stdout --kid img-1");
    expect(printed).toMatchObject({ code: 0, stderr: "" });
    expect(Object.keys(JSON.parse(printed.stdout) as object)).toEqual([
      "dev_jwt_private_key.json",
      "jwt_public_keys.json",
    ]);

    const refused = await cli("keygen");
    expect(refused).toStrictEqual({
      code: 1,
      stdout: "",
      stderr:
        "error: cannot write to config (EACCES); pass --config-dir with a writable folder, or --stdout to print the keys\n",
    });

    const written = await cli(`keygen --kid img-2 --config-dir ${join(home, "keys")}`);
    expect(written).toMatchObject({ code: 0, stderr: "" });
    expect(existsSync(join(home, "keys", "jwt_public_keys.json"))).toBe(true);
  });

  it("exits 0 within 10 s of SIGTERM", async () => {
    const running = server as ServerProcess;
    running.kill("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      running.exited,
      new Promise((resolve) => (timer = setTimeout(() => resolve("still running after 10 s"), 10_000))),
    ]);
    clearTimeout(timer);
    expect(outcome).toStrictEqual({ code: 0, signal: null });
  });
});

describe("npm start in the image's folder", () => {
  it("passes SIGTERM to the server: signalling the npm process stops node, which exits cleanly", async () => {
    const npmServer = await startServerProcess({
      command: ["npm", "start"],
      cwd: app,
      env: serverEnv(),
      ...(user !== undefined ? { user } : {}),
      waitForSecrets: true,
      readyTimeoutMs: 30_000,
    });
    try {
      expect((await curl([`${npmServer.url}/health`])).status).toBe(200);
      npmServer.kill("SIGTERM");
      await npmServer.waitForLine((line) => line.includes('"Received SIGTERM, draining in-flight calls"'));
      expect(await npmServer.exited).toStrictEqual({ code: 0, signal: null });
      // The server itself is gone, not only npm: nothing answers on its port any more.
      expect((await curl([`${npmServer.url}/health`])).status).toBe(0);
    } finally {
      npmServer.kill("SIGKILL");
      await npmServer.exited;
    }
  }, 60_000);
});
