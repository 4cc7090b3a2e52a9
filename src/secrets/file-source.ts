import { createHash } from "node:crypto";
import { statSync, watch as watchFolder, type FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  decodeUtf8,
  SecretSourceError,
  type SecretSource,
  type SecretVersion,
  type SecretWatch,
  type SecretWatchHandlers,
} from "./source.js";

export interface FileSecretSourceOptions {
  /** Folder holding `<name with "-" replaced by "_">.json` (the seed's `config/`). */
  readonly dir: string;
  /**
   * watch(): quiet time after the last event in the folder before `onChange` (default 50 ms), so the
   * several events of one save (truncate, write, an editor's rename) make one re-read of the whole file.
   */
  readonly watchDebounceMs?: number;
  /** watch(): how often to try again to watch a folder that does not exist (yet) or was replaced (default 1000 ms). */
  readonly watchRetryMs?: number;
}

/** A file source always watches its folder. */
export type FileSecretSource = SecretSource & Required<Pick<SecretSource, "watch">>;

/**
 * Reads secrets from local JSON files: `openai-api-keys` → `<dir>/openai_api_keys.json`. The version is a
 * hash of the content, so an unchanged file is never re-parsed and a rewrite within the same mtime tick is
 * still noticed. A missing file is a missing secret.
 *
 * watch() watches the folder, not the files: editors that save by writing a new file and renaming it over
 * the old one (vim, most IDEs) replace the file's inode, which a watch on the file itself would lose. A
 * folder that is missing, or deleted and created again, is watched again as soon as it exists.
 */
export function createFileSecretSource(options: FileSecretSourceOptions): FileSecretSource {
  if (typeof options.dir !== "string" || options.dir === "") {
    throw new TypeError("createFileSecretSource: dir must be a non-empty string");
  }
  const { dir, watchDebounceMs = 50, watchRetryMs = 1000 } = options;
  for (const [name, value] of [
    ["watchDebounceMs", watchDebounceMs],
    ["watchRetryMs", watchRetryMs],
  ] as const) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new TypeError(`createFileSecretSource: ${name} must be a positive integer`);
    }
  }
  const fileOf = (name: string): string => join(dir, `${name.replaceAll("-", "_")}.json`);
  return {
    kind: "files",
    describe: fileOf,
    async read(name: string): Promise<SecretVersion | undefined> {
      const file = fileOf(name);
      let bytes: Buffer;
      try {
        bytes = await readFile(file);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? "EIO";
        if (code === "ENOENT") return undefined;
        throw new SecretSourceError(`${file}: cannot read (${code})`, code, { cause: err });
      }
      const version = `sha256:${createHash("sha256").update(bytes).digest("hex").slice(0, 16)}`;
      return { data: decodeUtf8(bytes, file), version };
    },
    watch: (handlers) => watchDir(dir, handlers, watchDebounceMs, watchRetryMs),
  };
}

function watchDir(
  dir: string,
  handlers: SecretWatchHandlers,
  debounceMs: number,
  retryMs: number,
): SecretWatch {
  let watcher: FSWatcher | undefined;
  /** The inode of the folder being watched: a folder deleted and made again is another one. */
  let watchedIno: number | undefined;
  let debounce: NodeJS.Timeout | undefined;
  let retry: NodeJS.Timeout | undefined;
  let closed = false;
  /** One warning per outage, not one per retry. */
  let failing = false;

  /** The folder's inode, or why it cannot be watched (an errno code). */
  const identity = (): number | string => {
    try {
      const stats = statSync(dir);
      return stats.isDirectory() ? stats.ino : "ENOTDIR";
    } catch (err) {
      return (err as NodeJS.ErrnoException).code ?? "EIO";
    }
  };

  const detach = (): void => {
    watcher?.close();
    watcher = undefined;
    watchedIno = undefined;
  };

  const problem = (code: string): void => {
    if (failing || closed) return;
    failing = true;
    handlers.onError(`${dir}: cannot watch the folder (${code}); trying again every ${retryMs} ms`);
  };
  const codeOf = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? "EIO";

  /** Starts watching; false when the folder cannot be watched now. */
  const attach = (): boolean => {
    const ino = identity();
    if (typeof ino === "string") {
      problem(ino);
      return false;
    }
    try {
      // Not persistent: a watcher never keeps a stopping process alive.
      watcher = watchFolder(dir, { persistent: false }, changed);
    } catch (err) {
      problem(codeOf(err));
      return false;
    }
    watcher.on("error", (err) => {
      detach();
      problem(codeOf(err));
      scheduleRetry();
    });
    watchedIno = ino;
    failing = false;
    return true;
  };

  const scheduleRetry = (): void => {
    if (closed || retry !== undefined) return;
    retry = setTimeout(() => {
      retry = undefined;
      if (closed) return;
      // Files may have been written while nothing watched: read them once now.
      if (attach()) handlers.onChange();
      else scheduleRetry();
    }, retryMs);
    retry.unref();
  };

  function changed(): void {
    if (closed) return;
    clearTimeout(debounce);
    debounce = setTimeout(settled, debounceMs);
    debounce.unref();
  }

  function settled(): void {
    debounce = undefined;
    if (closed) return;
    // The folder itself was deleted or replaced: Linux then reports one last event and nothing more.
    if (identity() !== watchedIno) {
      detach();
      if (!attach()) scheduleRetry();
    }
    handlers.onChange();
  }

  if (!attach()) scheduleRetry();
  return {
    close() {
      closed = true;
      clearTimeout(debounce);
      clearTimeout(retry);
      detach();
    },
  };
}
