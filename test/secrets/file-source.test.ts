import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  createFileSecretSource,
  createSecretStore,
  logSecretLoadFailure,
  SecretLoadError,
  SecretSourceError,
  type RefreshingSecretStore,
  type SecretSource,
} from "../../src/secrets/index.js";
import { makeTestKey } from "../support/auth-keys.js";
import { captureLog, type CapturedLog } from "../support/log-capture.js";

const names = { products: "openai-api-keys", jwtKeys: "jwt-public-keys", hmacSecrets: "hmac-secrets" };
const apiKey = "sk-file-SECRET-VALUE-0000000000";
const productsDoc = (models: string[]): string =>
  JSON.stringify({ "product-dev": { providers: { openai: { api_key: apiKey, models } } } });

describe("file secret source", () => {
  let root: string;
  let dir: string;
  let source: SecretSource;
  let log: CapturedLog;
  let store: RefreshingSecretStore | undefined;
  let caseNumber = 0;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "aks-secrets-"));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });
  beforeEach(async () => {
    dir = join(root, String(caseNumber++));
    await mkdir(dir);
    // These cases drive refresh() by hand; watching the folder has its own cases (file-watch.test.ts).
    const files = createFileSecretSource({ dir });
    source = { kind: files.kind, describe: (name) => files.describe(name), read: (name) => files.read(name) };
    log = captureLog();
  });
  afterEach(async () => {
    await store?.stop();
    store = undefined;
    expect(log.text()).not.toContain(apiKey);
  });

  const newStore = (refreshIntervalMs = 3_600_000): RefreshingSecretStore => {
    store = createSecretStore({ source, names, refreshIntervalMs, logger: log.logger });
    return store;
  };

  it("maps a secret name to <dir>/<name with _ for ->.json and versions it by content", async () => {
    expect(source.describe("openai-api-keys")).toBe(join(dir, "openai_api_keys.json"));
    await writeFile(join(dir, "openai_api_keys.json"), "one");
    const first = await source.read("openai-api-keys");
    expect(first?.data).toBe("one");
    expect(first?.version).toMatch(/^sha256:[0-9a-f]{16}$/);
    await expect(source.read("openai-api-keys")).resolves.toEqual(first);
    await writeFile(join(dir, "openai_api_keys.json"), "two");
    const second = await source.read("openai-api-keys");
    expect(second?.data).toBe("two");
    expect(second?.version).not.toBe(first?.version);
  });

  it("resolves undefined for a missing file", async () => {
    await expect(source.read("jwt-public-keys")).resolves.toBeUndefined();
  });

  it("rejects a file it cannot read, naming the file and the errno code", async () => {
    await mkdir(join(dir, "hmac_secrets.json"));
    const err = await source.read("hmac-secrets").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SecretSourceError);
    expect((err as Error).message).toBe(`${join(dir, "hmac_secrets.json")}: cannot read (EISDIR)`);
  });

  it("rejects invalid UTF-8", async () => {
    await writeFile(join(dir, "x.json"), Buffer.from([0xc3, 0x28]));
    await expect(source.read("x")).rejects.toThrow(`${join(dir, "x.json")}: not valid UTF-8`);
  });

  it("validates its options", () => {
    expect(() => createFileSecretSource({ dir: "" })).toThrow(
      "createFileSecretSource: dir must be a non-empty string",
    );
  });

  it("runs the runbook's local setup: only openai_api_keys.json, JWT and HMAC disabled", async () => {
    await writeFile(join(dir, "openai_api_keys.json"), productsDoc(["gpt-4o", "gpt-4o-mini"]));
    const s = newStore();
    await s.start();
    expect([...(s.current()?.products.get("product-dev")?.models.keys() ?? [])]).toEqual([
      "gpt-4o",
      "gpt-4o-mini",
    ]);
    expect(s.current()?.jwtKeys).toBeUndefined();
    expect(s.current()?.hmacKeys).toBeUndefined();
  });

  it.each([
    [
      "a missing product file",
      () => Promise.resolve(),
      (d: string) =>
        `Failed to load secrets from local files: secret "openai-api-keys": not found (${join(d, "openai_api_keys.json")})`,
    ],
    [
      "a broken product file",
      (d: string) =>
        writeFile(
          join(d, "openai_api_keys.json"),
          `{"product-dev": {"providers": {"openai": {"api_key": "${apiKey}"`,
        ),
      // Cut short: the error is where the text ends, on its one line.
      (d: string) =>
        `Failed to load secrets from local files: secret "openai-api-keys": ${join(d, "openai_api_keys.json")}:1:${`{"product-dev": {"providers": {"openai": {"api_key": "${apiKey}"`.length + 1}: not valid JSON`,
    ],
    [
      "a product file with a trailing comma on line 4",
      (d: string) =>
        writeFile(
          join(d, "openai_api_keys.json"),
          `{\n  "product-dev": {\n    "providers": {"echo": {"models": ["echo-1"]}},\n  },\n}\n`,
        ),
      // V8 stops at the "}" after the comma: line 4, column 3. The file is named as editors link it.
      (d: string) =>
        `Failed to load secrets from local files: secret "openai-api-keys": ${join(d, "openai_api_keys.json")}:4:3: not valid JSON`,
    ],
    [
      "a product file that is JSON but not the schema",
      (d: string) =>
        writeFile(join(d, "openai_api_keys.json"), JSON.stringify({ "product-dev": { providers: {} } })),
      // A schema error keeps naming the JSON path, after the file.
      (d: string) =>
        `Failed to load secrets from local files: secret "openai-api-keys": ${join(d, "openai_api_keys.json")}: $["product-dev"].providers: expected at least one provider`,
    ],
  ])("fails start on %s with a clear message", async (_case, arrange, expected) => {
    await arrange(dir);
    const s = newStore();
    const err = await s.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SecretLoadError);
    expect((err as Error).message).toBe(expected(dir));
    logSecretLoadFailure(log.logger, err);
    expect(log.records().at(-1)).toMatchObject({
      severity: "ERROR",
      message: "Failed to load secrets from local files",
      secret: "openai-api-keys",
    });
  });

  it("picks up an edited file and ignores a half-written one", async () => {
    const file = join(dir, "openai_api_keys.json");
    await writeFile(file, productsDoc(["a"]));
    const s = newStore();
    await s.start();
    await writeFile(file, productsDoc(["a", "b"]));
    await expect(s.refresh()).resolves.toBe(true);
    const good = s.current();
    expect(good?.products.get("product-dev")?.models.has("b")).toBe(true);
    await writeFile(file, productsDoc(["a", "b", "c"]).slice(0, 40));
    await expect(s.refresh()).resolves.toBe(false);
    expect(s.current()).toBe(good);
    expect(log.records().filter((r) => r.severity === "ERROR")).toHaveLength(1);
  });

  it("shares one refresh between concurrent callers and refreshes nothing after stop", async () => {
    const file = join(dir, "openai_api_keys.json");
    await writeFile(file, productsDoc(["a"]));
    const s = newStore();
    await s.start();
    await writeFile(file, productsDoc(["b"]));
    const first = s.refresh();
    expect(s.refresh()).toBe(first);
    await expect(first).resolves.toBe(true);
    await s.stop();
    await writeFile(file, productsDoc(["c"]));
    await expect(s.refresh()).resolves.toBe(false);
    expect(s.current()?.products.get("product-dev")?.models.has("b")).toBe(true);
  });

  it("keeps notifying other listeners when one throws, and stops notifying after unsubscribe", async () => {
    const file = join(dir, "openai_api_keys.json");
    await writeFile(file, productsDoc(["a"]));
    const s = newStore();
    const calls: string[] = [];
    s.onChange(() => {
      throw new Error("listener broke");
    });
    const off = s.onChange(() => calls.push("second"));
    await s.start();
    off();
    await writeFile(file, productsDoc(["b"]));
    await s.refresh();
    expect(calls).toEqual(["second"]);
    expect(
      log
        .records()
        .filter((r) => r.message === "Secret change listener failed")
        .map((r) => r.error),
    ).toEqual(["listener broke", "listener broke"]);
  });

  it("may be started only once, and validates its options", async () => {
    await writeFile(join(dir, "openai_api_keys.json"), productsDoc(["a"]));
    const s = newStore();
    await s.start();
    await expect(s.start()).rejects.toThrow("SecretStore.start() may be called once");
    expect(() => createSecretStore({ source, names, refreshIntervalMs: 0, logger: log.logger })).toThrow(
      "createSecretStore: refreshIntervalMs must be a positive integer",
    );
    expect(() =>
      createSecretStore({
        source,
        names: { ...names, jwtKeys: "" },
        refreshIntervalMs: 1,
        logger: log.logger,
      }),
    ).toThrow("createSecretStore: names.jwtKeys must be a non-empty string");
  });

  describe("authentication keys (issue 16: no silent all-401 server)", () => {
    const hmacDoc = JSON.stringify({ "svc-a": { secret: "x".repeat(32), products: "*" } });
    const requireAuthStore = (): RefreshingSecretStore =>
      createSecretStore({ source, names, refreshIntervalMs: 60_000, logger: log.logger, requireAuth: true });

    it("requireAuth: a first set with neither JWT keys nor HMAC secrets is refused, naming both", async () => {
      await writeFile(join(dir, "openai_api_keys.json"), productsDoc(["gpt-4o"]));
      store = requireAuthStore();
      const err = await store.start().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(SecretLoadError);
      expect((err as SecretLoadError).message).toBe(
        `Failed to load secrets from local files: secret "jwt-public-keys, hmac-secrets": neither ${join(dir, "jwt_public_keys.json")} nor ${join(dir, "hmac_secrets.json")} exists, so every chat call would be refused: create one of them (docs/runbook.ja.md §0)`,
      );
      expect(store.current()).toBeUndefined();
    });

    it("requireAuth: one method is enough", async () => {
      await writeFile(join(dir, "openai_api_keys.json"), productsDoc(["gpt-4o"]));
      await writeFile(join(dir, "hmac_secrets.json"), hmacDoc);
      store = requireAuthStore();
      await store.start();
      expect(store.current()?.hmacKeys?.has("svc-a")).toBe(true);
    });

    it("keeps the last good keys, saying so, when a refresh would leave no method at all", async () => {
      const key = await makeTestKey("k1", "ES256");
      await writeFile(join(dir, "openai_api_keys.json"), productsDoc(["gpt-4o"]));
      await writeFile(join(dir, "jwt_public_keys.json"), JSON.stringify({ keys: [key.publicJwk] }));
      const s = newStore();
      await s.start();
      const before = s.current();
      await rm(join(dir, "jwt_public_keys.json"));
      await expect(s.refresh()).resolves.toBe(false);
      expect(s.current()).toBe(before);
      expect(s.current()?.jwtKeys?.keys).toHaveLength(1);
      const errors = log.records().filter((r) => r.severity === "ERROR");
      expect(errors.map((r) => r.message)).toEqual([
        "Every authentication method would be gone after this refresh; keeping the last good JWT keys and HMAC secrets",
      ]);
      // Not also "JWT authentication disabled": it is not.
      expect(log.records().map((r) => r.message)).not.toContain(
        "Secret not found; JWT authentication disabled",
      );
      // A new product version still goes through while the keys are kept.
      await writeFile(join(dir, "openai_api_keys.json"), productsDoc(["gpt-4o", "gpt-4o-mini"]));
      await expect(s.refresh()).resolves.toBe(true);
      expect(s.current()?.products.get("product-dev")?.providers[0]?.models).toEqual([
        "gpt-4o",
        "gpt-4o-mini",
      ]);
      expect(s.current()?.jwtKeys?.keys).toHaveLength(1);
    });
  });
});
