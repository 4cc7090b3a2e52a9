import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { decodeUtf8, SecretSourceError, type SecretSource, type SecretVersion } from "./source.js";

export interface FileSecretSourceOptions {
  /** Folder holding `<name with "-" replaced by "_">.json` (the seed's `config/`). */
  readonly dir: string;
}

/**
 * Reads secrets from local JSON files: `openai-api-keys` → `<dir>/openai_api_keys.json`. The version is a
 * hash of the content, so an unchanged file is never re-parsed and a rewrite within the same mtime tick is
 * still noticed. A missing file is a missing secret.
 */
export function createFileSecretSource(options: FileSecretSourceOptions): SecretSource {
  if (typeof options.dir !== "string" || options.dir === "") {
    throw new TypeError("createFileSecretSource: dir must be a non-empty string");
  }
  const { dir } = options;
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
  };
}
