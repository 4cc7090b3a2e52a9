import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { JSONWebKeySet } from "jose";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createMemoryNonceStore, sha256Hex } from "../../src/auth/index.js";
import { createHmacVerifier } from "../../src/auth/hmac-verifier.js";
import { createJwtVerifier } from "../../src/auth/jwt-verifier.js";
import { runCli } from "../../src/cli/index.js";
import { parseJwtKeys } from "../../src/secrets/parse-jwt-keys.js";
import { hmacKey } from "../support/auth-keys.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "aks-cli-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function cli(argv: string[], env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, { stdout: (l) => out.push(l), stderr: (l) => err.push(l), env });
  return { code, stdout: out.join("\n"), stderr: err.join("\n") };
}

const readJwks = async (): Promise<JSONWebKeySet> =>
  JSON.parse(await readFile(path.join(dir, "jwt_public_keys.json"), "utf8")) as JSONWebKeySet;

describe("cli keygen", () => {
  it("writes a private key (0600) and a JWKS with only the public key", async () => {
    const res = await cli(["keygen", "--kid", "dev-1", "--config-dir", dir]);
    expect(res).toMatchObject({ code: 0, stderr: "" });
    expect(res.stdout).toContain("kid dev-1 (ES256)");
    const privateKey = JSON.parse(
      await readFile(path.join(dir, "dev_jwt_private_key.json"), "utf8"),
    ) as Record<string, unknown>;
    expect(privateKey).toMatchObject({ kid: "dev-1", alg: "ES256", kty: "EC" });
    expect(typeof privateKey["d"]).toBe("string");
    expect(res.stdout).not.toContain(privateKey["d"] as string);
    expect((await stat(path.join(dir, "dev_jwt_private_key.json"))).mode & 0o777).toBe(0o600);
    const jwks = await readJwks();
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kid: "dev-1", alg: "ES256" });
    expect(jwks.keys[0]).not.toHaveProperty("d");
  });

  it("refuses to replace the private key without --force, and keeps other public keys on rotation", async () => {
    expect((await cli(["keygen", "--kid", "dev-1", "--config-dir", dir])).code).toBe(0);
    const again = await cli(["keygen", "--kid", "dev-2", "--config-dir", dir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(
      `error: ${path.join(dir, "dev_jwt_private_key.json")} exists; pass --force to replace it`,
    );
    expect((await readJwks()).keys.map((k) => k.kid)).toEqual(["dev-1"]);
    expect(
      (await cli(["keygen", "--kid", "dev-2", "--alg", "EdDSA", "--force", "--config-dir", dir])).code,
    ).toBe(0);
    expect((await readJwks()).keys.map((k) => [k.kid, k.alg])).toEqual([
      ["dev-1", "ES256"],
      ["dev-2", "EdDSA"],
    ]);
  });

  it("adds to a PEM-list file in the same format, and the result loads as the server loads it", async () => {
    const example = await readFile(
      path.join(import.meta.dirname, "../../config/jwt_public_keys.example.json"),
      "utf8",
    );
    await writeFile(path.join(dir, "jwt_public_keys.json"), example);
    expect((await cli(["keygen", "--kid", "dev-1", "--config-dir", dir])).code).toBe(0);
    const text = await readFile(path.join(dir, "jwt_public_keys.json"), "utf8");
    const list = JSON.parse(text) as { kid: string; pem: string; alg: string }[];
    expect(list.map((k) => k.kid)).toEqual(["example-2026-01", "dev-1"]);
    expect(list[1]).toMatchObject({
      alg: "ES256",
      pem: expect.stringMatching(/^-----BEGIN PUBLIC KEY-----/) as unknown,
    });
    const keys = await parseJwtKeys(text);
    const jwt = (await cli(["token", "--product", "p", "--sub", "a", "--config-dir", dir])).stdout;
    const verifier = createJwtVerifier({ clockToleranceSeconds: 30, maxTokenAgeSeconds: 3600 });
    await expect(verifier.verify(jwt, keys)).resolves.toMatchObject({ id: "a", keyId: "dev-1" });
  });

  it("refuses a file in neither format", async () => {
    await writeFile(path.join(dir, "jwt_public_keys.json"), '{"nope": 1}');
    expect(await cli(["keygen", "--config-dir", dir])).toMatchObject({
      code: 1,
      stderr: `error: ${path.join(dir, "jwt_public_keys.json")} is neither a JWKS nor a list of PEM keys; move it aside before running keygen`,
    });
  });

  it.each([
    [["--alg", "HS256"], "error: --alg must be one of RS256, PS256, ES256, EdDSA"],
    [["--kid", "../x"], "error: --kid must be 1-128 characters of A-Z a-z 0-9 . _ -"],
  ])("rejects %j", async (args, message) => {
    expect(await cli(["keygen", "--config-dir", dir, ...args])).toMatchObject({ code: 1, stderr: message });
  });
});

describe("cli token", () => {
  it.each(["RS256", "PS256", "ES256", "EdDSA"])(
    "prints a JWT (%s) the server's verifier accepts",
    async (alg) => {
      await cli(["keygen", "--kid", "dev-1", "--alg", alg, "--config-dir", dir]);
      const res = await cli([
        "token",
        "--product",
        "product-dev",
        "--product",
        "product-b",
        "--sub",
        "alice",
        "--ttl",
        "600",
        "--iss",
        "https://iss.test",
        "--aud",
        "aks",
        "--config-dir",
        dir,
      ]);
      expect(res).toMatchObject({ code: 0, stderr: "" });
      const verifier = createJwtVerifier({
        issuer: "https://iss.test",
        audience: "aks",
        clockToleranceSeconds: 30,
        maxTokenAgeSeconds: 3600,
      });
      // Loaded the way the server loads jwt-public-keys.
      const keys = await parseJwtKeys(await readFile(path.join(dir, "jwt_public_keys.json"), "utf8"));
      await expect(verifier.verify(res.stdout, keys)).resolves.toEqual({
        kind: "jwt",
        id: "alice",
        keyId: "dev-1",
        products: ["product-dev", "product-b"],
      });
    },
  );

  it("grants every product with --product '*'", async () => {
    await cli(["keygen", "--kid", "dev-1", "--config-dir", dir]);
    const res = await cli(["token", "--product", "*", "--sub", "ops", "--config-dir", dir]);
    const verifier = createJwtVerifier({ clockToleranceSeconds: 30, maxTokenAgeSeconds: 3600 });
    await expect(verifier.verify(res.stdout, await readJwks())).resolves.toMatchObject({ products: "*" });
  });

  it.each([
    [["--sub", "a"], "error: --product is required (a product name, or '*')"],
    [["--product", "p"], "error: --sub is required"],
    [["--product", "p", "--sub", "a", "--ttl", "1h"], "error: --ttl must be a whole number"],
    [["--product", "p", "--sub", "a", "--ttl", "0"], "error: --ttl must be a positive number of seconds"],
  ])("rejects %j", async (args, message) => {
    await cli(["keygen", "--kid", "dev-1", "--config-dir", dir]);
    expect(await cli(["token", "--config-dir", dir, ...args])).toMatchObject({ code: 1, stderr: message });
  });

  it("says to run keygen when there is no private key", async () => {
    const res = await cli(["token", "--product", "p", "--sub", "a", "--config-dir", dir]);
    expect(res).toMatchObject({
      code: 1,
      stderr: `error: cannot read ${path.join(dir, "dev_jwt_private_key.json")} (run keygen first)`,
    });
  });
});

describe("cli sign", () => {
  const secret = "cli-secret-0123456789";
  const keys = new Map([["svc-cli", hmacKey("svc-cli", secret, ["product-dev"])]]);
  const headersOf = (stdout: string): Headers =>
    new Headers(
      stdout.split("\n").map((line) => {
        const m = /^-H '([^:]+): ([^']*)'$/.exec(line);
        if (m?.[1] === undefined || m[2] === undefined) throw new Error(`unexpected line ${line}`);
        return [m[1], m[2]] as [string, string];
      }),
    );

  it("prints curl headers that verify for the request, secret from the environment", async () => {
    const body = '{"model":"echo-1","messages":[]}';
    const res = await cli(
      [
        "sign",
        "--key-id",
        "svc-cli",
        "--method",
        "post",
        "--path",
        "/v1/chat/product-dev?b=1&a=2",
        "--body",
        body,
      ],
      { API_KEY_SERVER_HMAC_SECRET: secret },
    );
    expect(res).toMatchObject({ code: 0, stderr: "" });
    expect(res.stdout).not.toContain(secret);
    const headers = headersOf(res.stdout);
    expect(headers.get("x-api-nonce")).toMatch(/^[A-Za-z0-9_-]{22}$/);
    const verifier = createHmacVerifier({ nonceStore: createMemoryNonceStore() });
    const parts = {
      method: "POST",
      path: "/v1/chat/product-dev",
      query: "a=2&b=1",
      bodySha256: sha256Hex(body),
    };
    await expect(verifier.verify(headers, parts, keys)).resolves.toMatchObject({ id: "svc-cli" });
  });

  it("reads the secret and body from files, and sends no nonce with --nonce ''", async () => {
    await writeFile(path.join(dir, "secret"), `${secret}\n`);
    await writeFile(path.join(dir, "body.json"), "{}");
    const res = await cli([
      "sign",
      "--key-id",
      "svc-cli",
      "--secret-file",
      path.join(dir, "secret"),
      "--method",
      "POST",
      "--path",
      "/v1/chat/product-dev",
      "--body-file",
      path.join(dir, "body.json"),
      "--nonce",
      "",
    ]);
    expect(res.code).toBe(0);
    const headers = headersOf(res.stdout);
    expect(headers.has("x-api-nonce")).toBe(false);
    const verifier = createHmacVerifier({
      nonceStore: createMemoryNonceStore(),
      // Only a server configured with API_KEY_SERVER_HMAC_REQUIRE_NONCE=false accepts this (docs/auth.md).
      requireNonce: false,
    });
    const parts = { method: "POST", path: "/v1/chat/product-dev", query: "", bodySha256: sha256Hex("{}") };
    await expect(verifier.verify(headers, parts, keys)).resolves.toMatchObject({ id: "svc-cli" });
  });

  it.each([
    [["--method", "GET", "--path", "/x"], {}, "error: --key-id is required"],
    [["--key-id", "k", "--path", "/x"], {}, "error: --method is required"],
    [["--key-id", "k", "--method", "GET"], {}, "error: --path is required"],
    [["--key-id", "k", "--method", "GET", "--path", "x"], {}, "error: --path must start with /"],
    [
      ["--key-id", "k", "--method", "GET", "--path", "/x"],
      {},
      "error: no HMAC secret: pass --secret-file or set API_KEY_SERVER_HMAC_SECRET",
    ],
    [
      ["--key-id", "k", "--method", "GET", "--path", "/x", "--body", "a", "--body-file", "b"],
      { API_KEY_SERVER_HMAC_SECRET: "s" },
      "error: give --body or --body-file, not both",
    ],
  ] as const)("rejects %j", async (args, env, message) => {
    expect(await cli(["sign", ...args], env)).toMatchObject({ code: 1, stderr: message });
  });
});

describe("cli usage (issue 16.4: --help everywhere, one-line errors with the fix)", () => {
  it("rejects an unknown command in one line naming the fix, exit code 2", async () => {
    expect(await cli(["frobnicate"])).toStrictEqual({
      code: 2,
      stdout: "",
      stderr: 'error: unknown command "frobnicate"; run npm run cli -- --help for the commands',
    });
  });

  it.each([
    [
      ["token", "--bogus"],
      "error: token: unknown option --bogus; run npm run cli -- token --help for the options",
    ],
    [
      ["keygen", "--kid"],
      "error: keygen: option --kid needs a value; run npm run cli -- keygen --help for the options",
    ],
    [["sign", "extra"], "error: sign: unexpected argument; run npm run cli -- sign --help for the options"],
  ])("%j → one line naming the command's help, exit code 2", async (argv, message) => {
    expect(await cli(argv)).toStrictEqual({ code: 2, stdout: "", stderr: message });
  });

  it.each([["--help"], ["-h"], ["help"]])("%s prints the list of commands, exit 0", async (flag) => {
    const res = await cli([flag]);
    expect(res).toMatchObject({ code: 0, stderr: "" });
    expect(res.stdout).toMatch(/^Usage: npm run cli -- <command> \[options\]/);
    for (const command of ["keygen", "token", "sign"]) expect(res.stdout).toContain(`  ${command}  `);
  });

  it("with no command prints the usage on stderr, exit 2", async () => {
    const res = await cli([]);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/^Usage: npm run cli -- <command> \[options\]/);
  });

  it.each([["keygen"], ["token"], ["sign"]])(
    "%s --help (anywhere among its options) prints that command's usage, exit 0, and does nothing else",
    async (command) => {
      for (const argv of [
        [command, "--help"],
        [command, "--config-dir", dir, "-h"],
        ["help", command],
      ]) {
        const res = await cli(argv);
        expect(res).toMatchObject({ code: 0, stderr: "" });
        expect(res.stdout).toMatch(new RegExp(`^Usage: npm run cli -- ${command} `));
      }
      await expect(stat(path.join(dir, "dev_jwt_private_key.json"))).rejects.toThrow(/ENOENT/);
    },
  );
});

describe("cli keygen where nothing is writable (the container image)", () => {
  it("--stdout prints both documents and writes nothing; the token command accepts the printed key", async () => {
    const res = await cli(["keygen", "--stdout", "--kid", "img-1", "--config-dir", path.join(dir, "never")]);
    expect(res).toMatchObject({ code: 0, stderr: "" });
    const printed = JSON.parse(res.stdout) as Record<
      string,
      { kid?: string; keys?: { kid: string; d?: string }[] }
    >;
    expect(Object.keys(printed)).toEqual(["dev_jwt_private_key.json", "jwt_public_keys.json"]);
    expect(printed["dev_jwt_private_key.json"]).toMatchObject({ kid: "img-1", alg: "ES256" });
    expect(printed["jwt_public_keys.json"]?.keys?.map((k) => [k.kid, k.d])).toEqual([["img-1", undefined]]);
    await expect(stat(path.join(dir, "never"))).rejects.toThrow(/ENOENT/);
    // The printed public keys load as the server loads them.
    await expect(parseJwtKeys(JSON.stringify(printed["jwt_public_keys.json"]))).resolves.toBeDefined();
  });
});
