import { mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  createFileSecretSource,
  createSecretStore,
  type RefreshingSecretStore,
  type SecretReadReport,
  type SecretSource,
} from "../../src/secrets/index.js";
import { makeTestKey } from "../support/auth-keys.js";
import { captureLog, type CapturedLog } from "../support/log-capture.js";

// In file mode the server sees a changed config file at once (README, Quick start: `keygen` needs no
// restart): src/secrets/file-source.ts watches the folder, src/secrets/secret-store.ts refreshes on what it
// reports; the periodic re-read (an hour here, so it cannot be what picks anything up) stays the fallback.

const names = { products: "openai-api-keys", jwtKeys: "jwt-public-keys", hmacSecrets: "hmac-secrets" };
const productsDoc = (models: string[]): string =>
  JSON.stringify({ "product-dev": { providers: { echo: { models } } } });
const hour = 3_600_000;

/** Polls `check` until it holds; rejects after `timeoutMs`. Returns how long it took. */
async function within(timeoutMs: number, check: () => boolean): Promise<number> {
  const started = performance.now();
  while (!check()) {
    if (performance.now() - started > timeoutMs) throw new Error(`not within ${timeoutMs} ms`);
    await sleep(10);
  }
  return performance.now() - started;
}

const models = (s: RefreshingSecretStore): string[] => [
  ...(s.current()?.products.get("product-dev")?.models.keys() ?? []),
];

describe("a store on a watched folder", () => {
  let root: string;
  let dir: string;
  let log: CapturedLog;
  let store: RefreshingSecretStore | undefined;
  let reads: SecretReadReport[];
  let caseNumber = 0;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "aks-watch-"));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });
  beforeEach(async () => {
    dir = join(root, String(caseNumber++));
    await mkdir(dir);
    log = captureLog();
    reads = [];
  });
  afterEach(async () => {
    await store?.stop();
    store = undefined;
  });

  const start = async (source: SecretSource = createFileSecretSource({ dir })) => {
    await writeFile(join(dir, "openai_api_keys.json"), productsDoc(["a"]));
    store = createSecretStore({
      source,
      names,
      refreshIntervalMs: hour,
      logger: log.logger,
      onRead: (read) => reads.push(read),
    });
    await store.start();
    return store;
  };

  it("uses a changed file within a second, with an hour's refresh interval", async () => {
    const s = await start();
    await writeFile(join(dir, "openai_api_keys.json"), productsDoc(["a", "b"]));
    const took = await within(5000, () => models(s).includes("b"));
    expect(took).toBeLessThan(1000);
    expect(models(s)).toEqual(["a", "b"]);
  });

  it("enables JWT as soon as a key file appears (what `npm run cli -- keygen` writes)", async () => {
    const s = await start();
    expect(s.current()?.jwtKeys).toBeUndefined();
    const key = await makeTestKey("dev-1", "ES256");
    await writeFile(join(dir, "jwt_public_keys.json"), JSON.stringify({ keys: [key.publicJwk] }));
    await within(5000, () => s.current()?.jwtKeys !== undefined);
    expect(s.current()?.jwtKeys?.keys.map((k) => k.kid)).toEqual(["dev-1"]);
  });

  it("follows an editor's save by rename (write a new file, rename it over the old one)", async () => {
    const s = await start();
    for (const [i, list] of [
      ["a", "c"],
      ["a", "c", "d"],
    ].entries()) {
      const temp = join(dir, `.openai_api_keys.json.${i}.swp`);
      await writeFile(temp, productsDoc(list));
      await rename(temp, join(dir, "openai_api_keys.json"));
      await within(5000, () => models(s).length === list.length);
      expect(models(s)).toEqual(list);
    }
  });

  it("keeps the last good set when the change is invalid, saying so, and takes the next valid one", async () => {
    const s = await start();
    const good = s.current();
    await writeFile(join(dir, "openai_api_keys.json"), '{"product-dev": {"providers": ');
    await within(5000, () => log.records().some((r) => r["severity"] === "ERROR"));
    expect(s.current()).toBe(good);
    expect(log.records().filter((r) => r["severity"] === "ERROR")).toMatchObject([
      { message: "Failed to refresh secret; keeping the last good version", secret: "openai-api-keys" },
    ]);
    await writeFile(join(dir, "openai_api_keys.json"), productsDoc(["e"]));
    await within(5000, () => models(s).includes("e"));
  });

  it("closes the watcher on stop: a change after it is never read", async () => {
    let closed = 0;
    const files = createFileSecretSource({ dir });
    const s = await start({
      ...files,
      watch: (handlers) => {
        const watch = files.watch(handlers);
        return {
          close() {
            closed++;
            watch.close();
          },
        };
      },
    });
    // The watcher works before stop...
    await writeFile(join(dir, "openai_api_keys.json"), productsDoc(["a", "f"]));
    await within(5000, () => models(s).includes("f"));
    const readsBefore = reads.length;
    expect(closed).toBe(0);
    await s.stop();
    expect(closed).toBe(1);
    // ...and nothing reads after it (well past the debounce).
    await writeFile(join(dir, "openai_api_keys.json"), productsDoc(["g"]));
    await sleep(500);
    expect(reads.length).toBe(readsBefore);
    expect(models(s)).toEqual(["a", "f"]);
  });

  it("logs a WARNING when the source cannot watch, naming the fallback", async () => {
    const files = createFileSecretSource({ dir });
    await start({
      ...files,
      watch: (handlers) => {
        handlers.onError(`${dir}: cannot watch the folder (ENOSPC); trying again every 1000 ms`);
        return { close: () => undefined };
      },
    });
    expect(log.records().filter((r) => r["message"]?.toString().startsWith("Cannot watch"))).toMatchObject([
      {
        message: "Cannot watch the secret files; changes are picked up by the periodic re-read",
        error: `${dir}: cannot watch the folder (ENOSPC); trying again every 1000 ms`,
        refreshSeconds: 3600,
      },
    ]);
  });

  it("refreshes again for a change seen while a refresh was running", async () => {
    const files = createFileSecretSource({ dir });
    let slowReads = false;
    let entered: () => void = () => undefined;
    const inRead = new Promise<void>((resolve) => (entered = resolve));
    const s = await start({
      ...files,
      // The refresh triggered by the first write has read the file and is still running when the second
      // write lands: that write must not be merged into it (and so lost until the next periodic re-read).
      read: async (name) => {
        const read = await files.read(name);
        if (slowReads && name === names.products) {
          entered();
          await sleep(300);
        }
        return read;
      },
    });
    slowReads = true;
    await writeFile(join(dir, "openai_api_keys.json"), productsDoc(["h"]));
    await inRead;
    await writeFile(join(dir, "openai_api_keys.json"), productsDoc(["h", "i"]));
    await within(5000, () => models(s).includes("i"));
  });
});

describe("watching a folder (src/secrets/file-source.ts)", () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "aks-watch-dir-"));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const watchOf = (dir: string) => {
    const events = { changes: 0, errors: [] as string[] };
    const watch = createFileSecretSource({ dir, watchRetryMs: 100 }).watch({
      onChange: () => events.changes++,
      onError: (message) => events.errors.push(message),
    });
    return { events, watch };
  };

  it("a folder that does not exist yet: one warning, then watched once it is made", async () => {
    const dir = join(root, "later");
    const { events, watch } = watchOf(dir);
    try {
      expect(events.errors).toEqual([`${dir}: cannot watch the folder (ENOENT); trying again every 100 ms`]);
      await sleep(350);
      expect(events.errors).toHaveLength(1);
      await mkdir(dir);
      await writeFile(join(dir, "openai_api_keys.json"), "{}");
      await within(5000, () => events.changes > 0);
      const seen = events.changes;
      await writeFile(join(dir, "openai_api_keys.json"), "{ }");
      await within(5000, () => events.changes > seen);
    } finally {
      watch.close();
    }
  });

  it("a folder deleted and made again is watched again", async () => {
    const dir = join(root, "again");
    await mkdir(dir);
    const { events, watch } = watchOf(dir);
    try {
      await rm(dir, { recursive: true });
      await within(5000, () => events.changes > 0);
      await mkdir(dir);
      await sleep(300);
      const seen = events.changes;
      await writeFile(join(dir, "openai_api_keys.json"), "{}");
      await within(5000, () => events.changes > seen);
    } finally {
      watch.close();
    }
  });

  it("several events of one save make one change, after the debounce", async () => {
    const dir = join(root, "burst");
    await mkdir(dir);
    const { events, watch } = watchOf(dir);
    try {
      const file = join(dir, "openai_api_keys.json");
      await Promise.all([writeFile(file, "1"), writeFile(`${file}.tmp`, "2")]);
      await rename(`${file}.tmp`, file);
      await within(5000, () => events.changes > 0);
      await sleep(200);
      expect(events.changes).toBe(1);
    } finally {
      watch.close();
    }
  });

  it("a path that is not a folder: the warning says so", async () => {
    const file = join(root, "a-file");
    await writeFile(file, "");
    const { events, watch } = watchOf(file);
    watch.close();
    expect(events.errors).toEqual([`${file}: cannot watch the folder (ENOTDIR); trying again every 100 ms`]);
  });

  it("refuses bad timings by name", () => {
    expect(() => createFileSecretSource({ dir: root, watchDebounceMs: 0 })).toThrow(
      "createFileSecretSource: watchDebounceMs must be a positive integer",
    );
    expect(() => createFileSecretSource({ dir: root, watchRetryMs: 1.5 })).toThrow(
      "createFileSecretSource: watchRetryMs must be a positive integer",
    );
  });
});
