import { exportSPKI, generateKeyPair } from "jose";
import * as grpc from "@grpc/grpc-js";
import type { SecretManagerServiceClient } from "@google-cloud/secret-manager";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import {
  createSecretManagerSource,
  createSecretStore,
  logSecretLoadFailure,
  SecretLoadError,
  SecretSourceError,
  type RefreshingSecretStore,
  type Secrets,
  type SecretSource,
} from "../../src/secrets/index.js";
import { captureLog, type CapturedLog } from "../support/log-capture.js";
import {
  createFakeSecretManagerClient,
  startFakeSecretManager,
  type FakeSecretManager,
} from "../support/fake-secret-manager.js";

// The auth library must never go looking for Google's metadata server from a test.
process.env.METADATA_SERVER_DETECTION = "none";

const names = { products: "openai-api-keys", jwtKeys: "jwt-public-keys", hmacSecrets: "hmac-secrets" };
const apiKeyV1 = "sk-live-v1-SECRET-VALUE-000000000";
const apiKeyV2 = "sk-live-v2-SECRET-VALUE-111111111";
const hmacSecret = "hmac-SECRET-VALUE-0123456789abcdef0123456789";

const productsDoc = (apiKey: string, models = ["gpt-4o"]): string =>
  JSON.stringify({ "product-dev": { providers: { openai: { api_key: apiKey, models } } } });
const hmacDoc = JSON.stringify({ "svc-a": { secret: hmacSecret, products: "*" } });

/** Where the fake Secret Manager keeps each secret (its versions are `${P}<name>/versions/<n>`). */
const P = "projects/test-project/secrets/";
describe("Secret Manager source and store, against the real client library", () => {
  let fake: FakeSecretManager;
  let client: SecretManagerServiceClient;
  let source: SecretSource;
  let jwtDoc: string;
  let log: CapturedLog;
  let store: RefreshingSecretStore | undefined;

  beforeAll(async () => {
    fake = await startFakeSecretManager("test-project");
    client = createFakeSecretManagerClient(fake.port);
    // Short enough that "unreachable" cases end quickly; long enough for a loaded CI machine.
    source = createSecretManagerSource({ projectId: "test-project", client, timeoutMs: 3000 });
    const { publicKey } = await generateKeyPair("ES256", { extractable: true });
    jwtDoc = JSON.stringify([{ kid: "k1", pem: await exportSPKI(publicKey) }]);
  });

  afterAll(async () => {
    await client.close();
    await fake.close();
  });

  beforeEach(() => {
    for (const name of Object.values(names)) {
      fake.deleteSecret(name);
      fake.failWith(name, undefined);
    }
    log = captureLog();
  });

  afterEach(async () => {
    await store?.stop();
    store = undefined;
    // Whatever a case did, no secret value may ever reach the log.
    for (const value of [apiKeyV1, apiKeyV2, hmacSecret]) expect(log.text()).not.toContain(value);
  });

  const newStore = (refreshIntervalMs = 3_600_000, from = source): RefreshingSecretStore => {
    store = createSecretStore({
      source: from,
      names,
      refreshIntervalMs,
      logger: log.logger,
      clock: () => 1234,
    });
    return store;
  };

  const seedAll = (): void => {
    fake.addVersion(names.products, productsDoc(apiKeyV1));
    fake.addVersion(names.jwtKeys, jwtDoc);
    fake.addVersion(names.hmacSecrets, hmacDoc);
  };

  const errorLines = (): Record<string, unknown>[] => log.records().filter((r) => r.severity === "ERROR");

  describe("the source", () => {
    it("reads the latest version with its number", async () => {
      fake.addVersion("s", "one");
      fake.addVersion("s", "two");
      await expect(source.read("s")).resolves.toEqual({ data: "two", version: "2" });
      expect(fake.requests.at(-1)).toBe("projects/test-project/secrets/s/versions/latest");
    });

    it("resolves undefined for a secret that does not exist", async () => {
      await expect(source.read("absent")).resolves.toBeUndefined();
    });

    it.each([
      [grpc.status.PERMISSION_DENIED, "PERMISSION_DENIED"],
      [grpc.status.UNAUTHENTICATED, "UNAUTHENTICATED"],
      [grpc.status.INTERNAL, "INTERNAL"],
    ])("rejects gRPC code %i with its name and the server's explanation", async (code, reason) => {
      fake.failWith("s", code, "nope");
      const err = await source.read("s").then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(SecretSourceError);
      expect((err as SecretSourceError).reason).toBe(reason);
      expect((err as Error).message).toBe(`projects/test-project/secrets/s: ${reason}: nope`);
      fake.failWith("s", undefined);
    });

    it("rejects a disabled latest version with FAILED_PRECONDITION", async () => {
      fake.addVersion("d", "x");
      fake.disableVersion("d", 1);
      await expect(source.read("d")).rejects.toThrow(
        "projects/test-project/secrets/d: FAILED_PRECONDITION: Secret Version [projects/test-project/secrets/d/versions/1] is in DISABLED state.",
      );
    });

    it("rejects a payload that is not UTF-8", async () => {
      fake.addVersion("bin", new Uint8Array([0xff, 0xfe, 0x00]));
      await expect(source.read("bin")).rejects.toThrow("projects/test-project/secrets/bin: not valid UTF-8");
    });

    it("validates its options", () => {
      expect(() => createSecretManagerSource({ projectId: "", client })).toThrow(/projectId/);
      expect(() => createSecretManagerSource({ projectId: "p", client, timeoutMs: 0 })).toThrow(/timeoutMs/);
    });
  });

  describe("start", () => {
    it("loads all three secrets", async () => {
      seedAll();
      const s = newStore();
      expect(s.current()).toBeUndefined();
      await s.start();
      const secrets = s.current();
      expect(secrets?.products.get("product-dev")?.providers[0]?.apiKeys).toStrictEqual([apiKeyV1]);
      expect(secrets?.jwtKeys?.keys.map((k) => [k.kid, k.alg])).toEqual([["k1", "ES256"]]);
      expect(secrets?.hmacKeys?.get("svc-a")?.products).toBe("*");
      expect(secrets?.loadedAt).toBe(1234);
      const loaded = log.records().find((r) => r.message === "Secrets loaded");
      expect(loaded?.secretVersions).toEqual({
        "openai-api-keys": "1",
        "jwt-public-keys": "1",
        "hmac-secrets": "1",
      });
    });

    it("disables JWT and HMAC with a warning when their secrets are missing", async () => {
      fake.addVersion(names.products, productsDoc(apiKeyV1));
      const s = newStore();
      await s.start();
      expect(s.current()?.jwtKeys).toBeUndefined();
      expect(s.current()?.hmacKeys).toBeUndefined();
      const warnings = log.records().filter((r) => r.severity === "WARNING");
      expect(warnings.map((w) => [w.message, w.secret])).toEqual([
        ["Secret not found; JWT authentication disabled", "jwt-public-keys"],
        ["Secret not found; HMAC authentication disabled", "hmac-secrets"],
        ["No JWT keys and no HMAC secrets: every chat request will be rejected as Unauthorized", undefined],
      ]);
    });

    it.each([
      [
        "NOT_FOUND",
        () => undefined,
        'Failed to load secrets from Secret Manager: secret "openai-api-keys": not found (projects/test-project/secrets/openai-api-keys)',
      ],
      [
        "PERMISSION_DENIED",
        () => fake.failWith(names.products, grpc.status.PERMISSION_DENIED, "Permission denied on resource"),
        'Failed to load secrets from Secret Manager: secret "openai-api-keys": projects/test-project/secrets/openai-api-keys: PERMISSION_DENIED: Permission denied on resource',
      ],
      [
        "a disabled latest version",
        () => {
          fake.addVersion(names.products, productsDoc(apiKeyV1));
          fake.disableVersion(names.products, 1);
        },
        'Failed to load secrets from Secret Manager: secret "openai-api-keys": projects/test-project/secrets/openai-api-keys: FAILED_PRECONDITION: Secret Version [projects/test-project/secrets/openai-api-keys/versions/1] is in DISABLED state.',
      ],
      [
        "an invalid product document",
        () =>
          fake.addVersion(
            names.products,
            JSON.stringify({ p: { providers: { openai: { api_key: apiKeyV1 } } } }),
          ),
        'Failed to load secrets from Secret Manager: secret "openai-api-keys": projects/test-project/secrets/openai-api-keys/versions/1: $.p.providers.openai.models: required',
      ],
    ])("rejects with the runbook's message on %s of the product secret", async (_case, arrange, message) => {
      fake.addVersion(names.jwtKeys, jwtDoc);
      arrange();
      const s = newStore();
      const err = await s.start().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(SecretLoadError);
      expect((err as Error).message).toBe(message);
      expect(s.current()).toBeUndefined();
      logSecretLoadFailure(log.logger, err);
      const line = log.records().at(-1);
      expect(line).toMatchObject({
        severity: "ERROR",
        message: "Failed to load secrets from Secret Manager",
        secret: "openai-api-keys",
      });
      expect(message).toContain(String(line?.error));
    });

    it("rejects when a present JWT secret is unreadable (only a missing one is optional)", async () => {
      fake.addVersion(names.products, productsDoc(apiKeyV1));
      fake.failWith(names.jwtKeys, grpc.status.PERMISSION_DENIED, "denied");
      await expect(newStore().start()).rejects.toThrow(
        'Failed to load secrets from Secret Manager: secret "jwt-public-keys": projects/test-project/secrets/jwt-public-keys: PERMISSION_DENIED: denied',
      );
    });

    it("rejects an invalid HMAC document without quoting it", async () => {
      fake.addVersion(names.products, productsDoc(apiKeyV1));
      fake.addVersion(
        names.hmacSecrets,
        JSON.stringify({ k: { secret: "SECRET-VALUE-short", products: "*" } }),
      );
      const err = await newStore()
        .start()
        .then(
          () => undefined,
          (e: unknown) => e as Error,
        );
      expect(err?.message).toBe(
        'Failed to load secrets from Secret Manager: secret "hmac-secrets": projects/test-project/secrets/hmac-secrets/versions/1: $.k.secret: must be at least 32 characters',
      );
    });
  });

  describe("refresh", () => {
    it("picks up a new version and swaps the whole set at once", async () => {
      seedAll();
      const s = newStore();
      const seen: Secrets[] = [];
      s.onChange((secrets) => seen.push(secrets));
      await s.start();
      const before = s.current();
      fake.addVersion(names.products, productsDoc(apiKeyV2, ["gpt-4o", "gpt-4.1"]));
      await expect(s.refresh()).resolves.toBe(true);
      const after = s.current();
      expect(after).not.toBe(before);
      expect(after?.products.get("product-dev")?.providers[0]?.apiKeys).toStrictEqual([apiKeyV2]);
      expect([...(after?.products.get("product-dev")?.models.keys() ?? [])]).toEqual(["gpt-4o", "gpt-4.1"]);
      // The unchanged secrets carry over; the old set a request may still hold is untouched.
      expect(after?.jwtKeys).toBe(before?.jwtKeys);
      expect(before?.products.get("product-dev")?.providers[0]?.apiKeys).toStrictEqual([apiKeyV1]);
      expect(seen).toEqual([before, after]);
    });

    it("does nothing when no secret has a new version", async () => {
      seedAll();
      const s = newStore();
      await s.start();
      const before = s.current();
      await expect(s.refresh()).resolves.toBe(false);
      expect(s.current()).toBe(before);
    });

    it("does not swap for a new version with identical content", async () => {
      seedAll();
      const s = newStore();
      await s.start();
      const before = s.current();
      fake.addVersion(names.products, productsDoc(apiKeyV1));
      await expect(s.refresh()).resolves.toBe(false);
      expect(s.current()).toBe(before);
      // The version is recorded, so a later change is still detected against it.
      fake.addVersion(names.products, productsDoc(apiKeyV2));
      await expect(s.refresh()).resolves.toBe(true);
    });

    it("ignores a malformed new version, keeps the last good one and logs an error each time", async () => {
      seedAll();
      const s = newStore();
      await s.start();
      const before = s.current();
      // Cut short: the syntax error is at the end of its one line, and the message says so by place.
      const broken = `{"product-dev": {"providers": {"openai": {"api_key": "${apiKeyV2}"`;
      fake.addVersion(names.products, broken);
      fake.addVersion(names.jwtKeys, JSON.stringify({ keys: [{ kty: "oct", k: "AAAA", kid: "x" }] }));
      await expect(s.refresh()).resolves.toBe(false);
      await expect(s.refresh()).resolves.toBe(false);
      expect(s.current()).toBe(before);
      const errors = errorLines();
      expect(errors.map((e) => [e.message, e.secret, e.keptVersion, e.error])).toEqual([
        [
          "Failed to refresh secret; keeping the last good version",
          "openai-api-keys",
          "1",
          `${P}openai-api-keys/versions/2:1:${broken.length + 1}: not valid JSON`,
        ],
        [
          "Failed to refresh secret; keeping the last good version",
          "jwt-public-keys",
          "1",
          `${P}jwt-public-keys/versions/2: $.keys[0].k: private or symmetric key material is not allowed`,
        ],
        [
          "Failed to refresh secret; keeping the last good version",
          "openai-api-keys",
          "1",
          `${P}openai-api-keys/versions/2:1:${broken.length + 1}: not valid JSON`,
        ],
        [
          "Failed to refresh secret; keeping the last good version",
          "jwt-public-keys",
          "1",
          `${P}jwt-public-keys/versions/2: $.keys[0].k: private or symmetric key material is not allowed`,
        ],
      ]);
      // A fixed version is picked up again.
      fake.addVersion(names.products, productsDoc(apiKeyV2));
      await expect(s.refresh()).resolves.toBe(true);
      expect(s.current()?.products.get("product-dev")?.providers[0]?.apiKeys).toStrictEqual([apiKeyV2]);
    });

    it.each([
      [
        "jwt-public-keys",
        '{"keys": []}',
        `${P}jwt-public-keys/versions/2: $.keys: no keys (to turn JWT off, delete the secret instead)`,
      ],
      [
        "jwt-public-keys",
        "[]",
        `${P}jwt-public-keys/versions/2: $: no keys (to turn JWT off, delete the secret instead)`,
      ],
      [
        "hmac-secrets",
        "{}",
        `${P}hmac-secrets/versions/2: $: no keys (to turn HMAC off, delete the secret instead)`,
      ],
    ] as const)(
      "refuses an empty key set in %s %s with an ERROR, keeping the last good keys",
      async (name, doc, error) => {
        // One bad push must not lock every caller of the method out (issue 18, item 6).
        seedAll();
        const s = newStore();
        await s.start();
        const before = s.current();
        fake.addVersion(name, doc);
        await expect(s.refresh()).resolves.toBe(false);
        expect(s.current()).toBe(before);
        expect(before?.jwtKeys?.keys.length).toBeGreaterThan(0);
        expect(before?.hmacKeys?.size).toBeGreaterThan(0);
        expect(errorLines().map((e) => [e.message, e.secret, e.keptVersion, e.error])).toEqual([
          ["Failed to refresh secret; keeping the last good version", name, "1", error],
        ]);
      },
    );

    it("keeps the last good version while a new latest version is disabled", async () => {
      seedAll();
      const s = newStore();
      await s.start();
      const before = s.current();
      const v2 = fake.addVersion(names.products, productsDoc(apiKeyV2));
      fake.disableVersion(names.products, v2);
      await expect(s.refresh()).resolves.toBe(false);
      expect(s.current()).toBe(before);
      expect(errorLines()[0]?.error).toBe(
        "projects/test-project/secrets/openai-api-keys: FAILED_PRECONDITION: Secret Version [projects/test-project/secrets/openai-api-keys/versions/2] is in DISABLED state.",
      );
    });

    it("keeps the last good set while Secret Manager is unreachable, and recovers", async () => {
      seedAll();
      // A shorter bound on each read: every read below waits for it while nobody listens.
      const s = newStore(
        3_600_000,
        createSecretManagerSource({ projectId: "test-project", client, timeoutMs: 500 }),
      );
      await s.start();
      const before = s.current();
      await fake.stop();
      try {
        await expect(s.refresh()).resolves.toBe(false);
        expect(s.current()).toBe(before);
        const errors = errorLines();
        expect(errors.map((e) => e.secret).sort()).toEqual([
          "hmac-secrets",
          "jwt-public-keys",
          "openai-api-keys",
        ]);
        // A call racing the dropped connection is CANCELLED; later ones find nobody listening.
        for (const e of errors) expect(e.error).toMatch(/: (UNAVAILABLE|DEADLINE_EXCEEDED|CANCELLED): /);
        await expect(s.refresh()).resolves.toBe(false);
        expect(s.current()).toBe(before);
        expect(errorLines()).toHaveLength(6);
      } finally {
        await fake.restart();
      }
      fake.addVersion(names.products, productsDoc(apiKeyV2));
      // The client reconnects with backoff, and the source does not retry inside a read (the store's refresh
      // interval does): refreshes fail fast until the channel is through, then one swaps the new set in.
      await vi.waitFor(async () => expect(await s.refresh()).toBe(true), { timeout: 15_000, interval: 100 });
      expect(s.current()?.products.get("product-dev")?.providers[0]?.apiKeys).toStrictEqual([apiKeyV2]);
    });

    it("keeps the products when their secret is deleted, but disables HMAC when its secret is", async () => {
      seedAll();
      const s = newStore();
      await s.start();
      const before = s.current();
      fake.deleteSecret(names.products);
      fake.deleteSecret(names.hmacSecrets);
      await expect(s.refresh()).resolves.toBe(true);
      expect(s.current()?.products).toBe(before?.products);
      expect(s.current()?.hmacKeys).toBeUndefined();
      expect(s.current()?.jwtKeys).toBe(before?.jwtKeys);
      expect(errorLines().map((e) => [e.secret, e.error])).toEqual([["openai-api-keys", "secret not found"]]);
      expect(
        log
          .records()
          .filter((r) => r.severity === "WARNING")
          .map((r) => r.message),
      ).toEqual(["Secret not found; HMAC authentication disabled"]);
    });

    it("enables HMAC when its secret appears", async () => {
      fake.addVersion(names.products, productsDoc(apiKeyV1));
      const s = newStore();
      await s.start();
      fake.addVersion(names.hmacSecrets, hmacDoc);
      await expect(s.refresh()).resolves.toBe(true);
      expect(s.current()?.hmacKeys?.has("svc-a")).toBe(true);
    });

    it("refreshes on its own timer", async () => {
      seedAll();
      const s = newStore(20);
      await s.start();
      const changed = new Promise<Secrets>((resolve) => s.onChange(resolve));
      fake.addVersion(names.products, productsDoc(apiKeyV2));
      const secrets = await changed;
      expect(secrets.products.get("product-dev")?.providers[0]?.apiKeys).toStrictEqual([apiKeyV2]);
      expect(s.current()).toBe(secrets);
    });
  });
});
