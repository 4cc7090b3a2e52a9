import { execFile } from "node:child_process";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { promisify } from "node:util";

/**
 * The README's Node snippets, run as a user runs them: the README is read at test time, so a snippet that
 * drifts from what the server does fails its test.
 */

/** The first ```js block after `heading` (e.g. "## Embeddings") in README.md; "" when there is none. */
export async function readmeSnippet(heading: string): Promise<string> {
  const readme = await readFile(new URL("../../README.md", import.meta.url), "utf8");
  const section = readme.slice(readme.indexOf(heading));
  return /```js\n([\s\S]*?)```/.exec(section)?.[1] ?? "";
}

/**
 * Runs a snippet with `server` in place of the README's `http://localhost:8000`, in a Node process of its own
 * with only PATH and `env`, from a file inside the repository (node_modules/.cache), so its imports resolve
 * as they do for a user who installed the package. Returns its standard output.
 */
export async function runSnippet(
  snippet: string,
  server: string,
  env: Readonly<Record<string, string>>,
): Promise<string> {
  const dir = new URL("../../node_modules/.cache/readme-snippets/", import.meta.url);
  await mkdir(dir, { recursive: true });
  const file = new URL(`snippet-${process.pid}-${Date.now()}.mjs`, dir);
  await writeFile(file, snippet.replace("http://localhost:8000", server));
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [file.pathname], {
      env: { PATH: process.env["PATH"] ?? "", ...env },
    });
    return stdout;
  } finally {
    await rm(file, { force: true });
  }
}
