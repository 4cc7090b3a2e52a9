import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, resolve } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { build, type Rollup } from "vite";

/** Debian's Chromium; `.ci/run` installs it when missing. */
export const chromiumPath = "/usr/bin/chromium";

/**
 * Starts headless Chromium from Debian's package through playwright-core (no browser download). Throws
 * when it is not installed: the browser tests must fail, never skip, where they cannot run. The flags
 * keep it from reaching Google's hosts on a machine without network (it would otherwise keep trying).
 */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(chromiumPath)) {
    throw new Error(`${chromiumPath} not found: install Debian's chromium (bash .ci/run does)`);
  }
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      // Chromium refuses to start its sandbox as root (CI runs as root here).
      ...(process.getuid?.() === 0 ? ["--no-sandbox"] : []),
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
  });
}

/**
 * Bundles a browser entry (TypeScript, importing packages from node_modules and the generated code) into
 * one ES module with vite, which is already a dev dependency; nothing is written to disk.
 */
export async function bundleForBrowser(entry: string): Promise<string> {
  const result = await build({
    configFile: false,
    logLevel: "warn",
    root: resolve(import.meta.dirname, "../.."),
    build: {
      write: false,
      minify: false,
      emptyOutDir: false,
      lib: { entry, formats: ["es"], fileName: "bundle" },
      // One file: the page server answers only the entry (the Anthropic SDK imports some modules lazily).
      rolldownOptions: { output: { codeSplitting: false } },
    },
  });
  const outputs = (Array.isArray(result) ? result : [result]) as Rollup.RollupOutput[];
  const chunk = outputs.flatMap((o) => o.output).find((o) => o.type === "chunk" && o.isEntry);
  if (chunk === undefined || chunk.type !== "chunk")
    throw new Error(`bundleForBrowser: no entry chunk for ${entry}`);
  return chunk.code;
}

/** A file a page server answers with. */
export interface PageFile {
  readonly contentType: string;
  readonly body: string | Buffer;
}

export interface PageServer {
  /** `http://127.0.0.1:PORT`: the page's origin. */
  readonly origin: string;
  close(): Promise<void>;
}

const contentTypes: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
};

/**
 * Serves pages on 127.0.0.1, port 0: a separate origin from the API server (another port). `files` are
 * answered by exact path; `dirs` maps a path prefix to a folder on disk (for examples/web/).
 */
export async function startPageServer(
  files: Readonly<Record<string, PageFile>>,
  dirs: Readonly<Record<string, string>> = {},
): Promise<PageServer> {
  const server = createServer((req, res) => {
    void (async () => {
      const path = new URL(req.url ?? "/", "http://page").pathname;
      let file = files[path];
      for (const [prefix, dir] of Object.entries(dirs)) {
        if (file !== undefined || !path.startsWith(prefix)) continue;
        const name = path.slice(prefix.length) || "index.html";
        if (name.includes("..")) break;
        const body = await readFile(join(dir, name)).catch(() => undefined);
        if (body !== undefined)
          file = { contentType: contentTypes[extname(name)] ?? "application/octet-stream", body };
      }
      if (file === undefined) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { "content-type": file.contentType, "cache-control": "no-store" }).end(file.body);
    })();
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}
