import { execFile } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { mkdir, readFile, rename, rm } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";

/** The Claude Code release the tests run (its wire format was checked against it: /work docs, README). */
export const claudeCodeVersion = "2.1.328";

/**
 * Where Claude Code is installed for the tests, outside the project's dependencies (it is a ~370 MB native
 * binary): `AKS_CLAUDE_CODE_DIR`, or `~/.cache/aks-claude-code`.
 */
export function claudeCodeDir(): string {
  return process.env["AKS_CLAUDE_CODE_DIR"] ?? join(homedir(), ".cache", "aks-claude-code");
}

function packageDir(dir: string): string {
  return join(dir, "node_modules", "@anthropic-ai", "claude-code");
}

async function installedVersion(dir: string): Promise<string | undefined> {
  const file = join(packageDir(dir), "package.json");
  if (!existsSync(file)) return undefined;
  return (JSON.parse(await readFile(file, "utf8")) as { version?: string }).version;
}

/**
 * The native executable: the platform package's `claude` (`@anthropic-ai/claude-code-linux-x64`, an
 * optional dependency npm installs), or `bin/claude.exe` once a postinstall has put it there (without the
 * postinstall it is a small script saying so).
 */
function binaryOf(dir: string): string | undefined {
  const candidates = [
    join(dir, "node_modules", "@anthropic-ai", `claude-code-${process.platform}-${process.arch}`, "claude"),
    join(packageDir(dir), "bin", "claude.exe"),
  ];
  return candidates.find((file) => existsSync(file) && statSync(file).size > 1024 * 1024);
}

/**
 * The path of Claude Code's native binary, installed first when missing: `npm install --prefix <dir>
 * @anthropic-ai/claude-code@<version>` (no install scripts: the binary comes in the platform package),
 * into a temporary folder renamed when complete, so an interrupted install is never taken for a finished
 * one.
 */
export async function ensureClaudeCode(): Promise<string> {
  const dir = claudeCodeDir();
  const installed = binaryOf(dir);
  if ((await installedVersion(dir)) === claudeCodeVersion && installed !== undefined) return installed;
  const temporary = `${dir}.partial-${process.pid}`;
  await rm(temporary, { recursive: true, force: true });
  await mkdir(temporary, { recursive: true });
  const output = await new Promise<string>((resolve, reject) => {
    execFile(
      "npm",
      [
        "install",
        "--prefix",
        temporary,
        "--no-save",
        "--no-package-lock",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        `@anthropic-ai/claude-code@${claudeCodeVersion}`,
      ],
      { maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) =>
        err ? reject(new Error(`npm install failed: ${stderr}${stdout}`)) : resolve(stdout),
    );
  });
  if ((await installedVersion(temporary)) !== claudeCodeVersion) {
    throw new Error(`npm install of Claude Code ${claudeCodeVersion} left no package: ${output}`);
  }
  await rm(dir, { recursive: true, force: true });
  await rename(temporary, dir);
  const binary = binaryOf(dir);
  if (binary === undefined)
    throw new Error(`Claude Code ${claudeCodeVersion} installed no native binary in ${dir}`);
  return binary;
}
