import { execFile } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gcloudFlagProblems, loadGcloudReference } from "../support/gcloud-reference.js";
import { repoRoot, startServerProcess, type ServerProcess } from "../support/server-process.js";

/**
 * Issue 16.6: docs/runbook.ja.md cannot rot. Every command of the local section (§1) is run, in order, in a
 * fresh copy of the project against the server its own `npm start` starts; every gcloud line of the whole
 * runbook uses only flags of the pinned reference (docs/reference/gcloud-flags.json); and the corrections of
 * the issue stay made (no --set-env-vars, log queries filtered by logName, no placeholders that break a paste).
 */

const runbook = await readFile(join(repoRoot, "docs/runbook.ja.md"), "utf8");

/** The commands of the ```bash blocks of `text`: comments dropped, continuation lines and open quotes joined. */
function commands(text: string): string[] {
  const out: string[] = [];
  for (const block of text.matchAll(/```bash\n([\s\S]*?)```/g)) {
    let pending = "";
    for (const line of (block[1] ?? "").split("\n")) {
      if (pending === "" && (line.trim() === "" || line.trim().startsWith("#"))) continue;
      pending += (pending === "" ? "" : "\n") + line;
      const quotes = (pending.match(/'/g) ?? []).length;
      if (pending.endsWith("\\") || quotes % 2 === 1) continue;
      // A trailing comment (outside quotes: the quote count before it is even).
      const hash = pending.search(/\s+#\s/);
      const command =
        hash !== -1 && (pending.slice(0, hash).match(/'/g) ?? []).length % 2 === 0
          ? pending.slice(0, hash)
          : pending;
      out.push(command.trim());
      pending = "";
    }
    if (pending !== "") throw new Error(`runbook: unterminated command ${pending}`);
  }
  return out;
}

/** The text of the `## N.` section. */
function section(n: number): string {
  const start = runbook.indexOf(`\n## ${n}. `);
  const end = runbook.indexOf("\n## ", start + 1);
  if (start === -1) throw new Error(`runbook has no section ${n}`);
  return runbook.slice(start, end === -1 ? undefined : end);
}

/** Splits a command line into words the way a shell would for flag checking (quotes kept together). */
const words = (command: string): string[] =>
  (command.replace(/\\\n/g, " ").match(/(?:[^\s"']+|"[^"]*"|'[^']*')+/g) ?? []).map((w) =>
    w.replace(/["']/g, ""),
  );

const local = commands(section(1));
/** Commands of §1 this test does not run, and why (any other command must run). */
const notRun = new Map([
  [
    "git clone https://github.com/your-github-org/api-key-server.git",
    "the test works in a copy of this checkout",
  ],
  ["cd api-key-server", "the test works in a copy of this checkout"],
  ["npm ci", "the copy links this checkout's node_modules, installed from the same lockfile"],
  ["npm test", "this test is part of npm test"],
  ["bash .ci/run", "this test is part of .ci/run"],
]);

describe("docs/runbook.ja.md §1 (local), run as written", () => {
  let dir: string;
  let server: ServerProcess | undefined;
  const env: Record<string, string> = {};
  const before = local.slice(0, local.indexOf("npm start"));
  const after = local.slice(local.indexOf("npm start") + 1);

  /** Runs one runbook command with bash in the copy, with the runbook's exports so far. */
  const sh = (command: string): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile(
        "bash",
        ["-c", `set -euo pipefail\n${command}`],
        { cwd: dir, env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024, timeout: 120_000 },
        (err, stdout, stderr) =>
          resolve({ code: typeof err?.code === "number" ? err.code : err ? 1 : 0, stdout, stderr }),
      );
    });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "aks-runbook-"));
    // A checkout as git clone leaves it (what the runbook's commands read), plus the installed dependencies.
    for (const path of [
      "package.json",
      "package-lock.json",
      "tsconfig.json",
      "tsconfig.build.json",
      "src",
      "gen",
    ]) {
      await cp(join(repoRoot, path), join(dir, path), { recursive: true });
    }
    await mkdir(join(dir, "config"));
    for (const name of ["openai_api_keys", "jwt_public_keys", "hmac_secrets"]) {
      await cp(join(repoRoot, "config", `${name}.example.json`), join(dir, "config", `${name}.example.json`));
    }
    await symlink(join(repoRoot, "node_modules"), join(dir, "node_modules"), "dir");
  });

  afterAll(async () => {
    // SIGTERM, which npm passes on to the server it started: a SIGKILL would end npm alone and leave the
    // server running as an orphan.
    server?.kill("SIGTERM");
    const stuck = setTimeout(() => server?.kill("SIGKILL"), 15_000);
    await server?.exited;
    clearTimeout(stuck);
    await rm(dir, { recursive: true, force: true });
  });

  it("has the commands this test knows how to run, and npm start once", () => {
    expect(local.filter((c) => c === "npm start")).toHaveLength(1);
    for (const command of local) {
      expect(command).toMatch(
        /^(npm |npx buf curl |curl |cp |export |[A-Z_]+=\$\(npm |git clone |cd |bash \.ci\/run)/,
      );
    }
    expect(local.filter((c) => notRun.has(c))).toEqual([...notRun.keys()]);
  });

  it("the set-up commands succeed in a fresh checkout", async () => {
    for (const command of before.filter((c) => !notRun.has(c))) {
      const exported = /^export ([A-Z_]+)=(.*)$/.exec(command);
      if (exported !== null) {
        env[exported[1] ?? ""] = exported[2] ?? "";
        continue;
      }
      const result = await sh(command);
      expect({ command, ...result }).toMatchObject({ command, code: 0 });
    }
  }, 180_000);

  it("npm start starts the server (on a free port instead of 8000)", async () => {
    server = await startServerProcess({
      command: ["npm", "start"],
      cwd: dir,
      env: { ...env, PORT: "0", API_KEY_SERVER_HOST: "127.0.0.1" },
      waitForSecrets: true,
      readyTimeoutMs: 30_000,
    });
    expect(server.logs().find((l) => l["message"] === "Secrets loaded")?.["secretVersions"]).toMatchObject({
      "jwt-public-keys": expect.stringMatching(/^sha256:/) as unknown,
    });
  }, 60_000);

  it("every check command succeeds against it, with the answers the runbook promises", async () => {
    const url = server?.url ?? "";
    // One shell for all of them, so TOKEN=$(...) carries to the commands after it, as in a terminal.
    const script = after
      .filter((c) => !notRun.has(c))
      .map((c) => c.replaceAll("http://localhost:8000", url).replace(/^curl /, "curl -sS --fail-with-body "))
      .map((c, i) => `${c}\necho "::done ${i}"`)
      .join("\n");
    const result = await sh(script);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const ran = after.filter((c) => !notRun.has(c));
    expect(result.stdout).toContain(`::done ${ran.length - 1}`);
    expect(result.stdout).toContain('"status":"ok"');
    expect(result.stdout).toContain('"id":"echo-1"');
    expect(result.stdout).toContain('"content":"Hello"');
    expect(result.stdout).toContain('"status": "SERVING"');
    expect(result.stdout).toContain("apikeyserver.v1.ChatService");
    expect(result.stdout).toContain("Usage: npm run cli -- token ");
  }, 120_000);
});

describe("docs/runbook.ja.md, every section", () => {
  const all = commands(runbook);
  const gcloud = all.filter((c) => c.startsWith("gcloud ") || c.includes("$(gcloud "));

  it("uses only gcloud flags of the pinned reference (docs/reference/gcloud-flags.json)", async () => {
    const reference = await loadGcloudReference();
    expect(gcloud.length).toBeGreaterThan(30);
    const problems = gcloud.flatMap((command) =>
      command
        .split(/\$\(|\)/)
        .map((part) => words(part.trim()))
        .filter((w) => w[0] === "gcloud")
        .flatMap((w) => gcloudFlagProblems(w, reference)),
    );
    expect(problems).toEqual([]);
  });

  it("never uses --set-env-vars, and deploys with the same flags as cloudbuild.yaml", () => {
    expect(all.filter((c) => c.includes("--set-env-vars"))).toEqual([]);
    const deploy = all.find((c) => c.startsWith("gcloud run deploy") && c.includes("--update-env-vars"));
    for (const flag of [
      "--no-allow-unauthenticated",
      "--use-http2",
      "--timeout=300",
      "--service-account=",
      "--startup-probe=grpc.",
    ]) {
      expect(deploy).toContain(flag);
    }
  });

  it("has first-time setup, rollback and traffic split commands", () => {
    const section0 = commands(section(0));
    for (const needed of [
      "gcloud services enable",
      "gcloud artifacts repositories create",
      "gcloud secrets create openai-api-keys",
      "gcloud secrets create jwt-public-keys",
      "gcloud secrets create hmac-secrets",
      "gcloud iam service-accounts create",
      "roles/secretmanager.secretAccessor",
      "roles/run.admin",
      "roles/artifactregistry.writer",
      "roles/iam.serviceAccountUser",
    ]) {
      expect(section0.some((c) => c.includes(needed))).toBe(true);
    }
    expect(all.some((c) => /update-traffic .*--to-revisions=/.test(c))).toBe(true);
    expect(all.some((c) => /update-traffic .*--to-tags=/.test(c))).toBe(true);
    expect(all.some((c) => c.includes("--no-traffic") && c.includes("--tag="))).toBe(true);
  });

  it("can be pasted: no <placeholders>, no gcr.io images of our own", () => {
    expect(all.filter((c) => /<[a-z-]+>/.test(c))).toEqual([]);
    expect(all.filter((c) => /gcr\.io\/\$\{?PROJECT_ID/.test(c))).toEqual([]);
  });

  it("marks every value to replace with `# ← 置き換え`, and its header counts them right", () => {
    /** Values a reader must replace: example names and addresses that cannot work as they are. */
    const placeholder = /your-[a-z-]+|app\.example\.com|admin\.example\.com|10\.0\.0\.3/;
    const mark = "# ← 置き換え";
    const unmarked: string[] = [];
    let marks = 0;
    for (const block of runbook.matchAll(/```bash\n([\s\S]*?)```/g)) {
      const lines = (block[1] ?? "").split("\n");
      let start = 0;
      lines.forEach((line, i) => {
        if (i > 0 && !(lines[i - 1] ?? "").trimEnd().endsWith("\\")) start = i;
        if (line.includes(mark)) marks++;
        if (line.trim().startsWith("#") || !placeholder.test(line)) return;
        // Marked on the command itself (any of its lines) or on the comment line right above it.
        let end = i;
        while ((lines[end] ?? "").trimEnd().endsWith("\\")) end++;
        const command = lines.slice(start, end + 1).join("\n");
        if (!command.includes(mark) && !(lines[start - 1] ?? "").includes(mark)) unmarked.push(line.trim());
      });
    }
    expect(unmarked).toEqual([]);
    // The placeholders are real (the pattern finds them), and the header states their number.
    expect(marks).toBe(6);
    expect(runbook.slice(0, runbook.indexOf("\n## "))).toContain(
      "プレースホルダーは\n> 6 か所で、どれもその行末か、コマンドの直前の行に `# ← 置き換え` と書いてあります",
    );
  });

  it("says what the tests need of Redis as test/support/redis-global-setup.ts does it", async () => {
    const setup = await readFile(join(repoRoot, "test/support/redis-global-setup.ts"), "utf8");
    // The tests start their own redis-server on a free port, or use the one named by this variable...
    expect(setup).toContain('process.env["API_KEY_SERVER_TEST_REDIS_URL"]');
    expect(setup).toContain("startRedisServer(port)");
    // ...so the runbook neither asks for a Redis on 6379 nor calls one required.
    const local = section(1);
    expect(local).not.toContain("6379");
    expect(local).not.toContain("Redis 必須");
    expect(local).toContain("API_KEY_SERVER_TEST_REDIS_URL");
    expect(local).toContain("空きポートで専用の `redis-server` を起動");
  });

  it("explains npm ci's EBADENGINE warnings, as the README does", async () => {
    const readme = await readFile(join(repoRoot, "README.md"), "utf8");
    expect(readme).toContain("`npm ci` prints about 85 `npm warn EBADENGINE Unsupported engine` lines");
    expect(section(1)).toContain("`npm warn EBADENGINE` を約 85 行出すが無害");
  });

  it("filters every log query by logName (Cloud Run's request log would count every call twice)", () => {
    const queries = gcloud.filter((c) => c.includes(" logging "));
    expect(queries.length).toBeGreaterThan(0);
    for (const query of queries) expect(query).toContain("logName=");
    const queryBlock = /```\nresource\.type[^`]*```/.exec(section(5))?.[0] ?? "";
    expect(queryBlock).toContain("logName=");
  });
});
