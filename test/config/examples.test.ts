import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { parseHmacSecrets, parseJwtKeys, parseProducts } from "../../src/secrets/index.js";

const read = (name: string): Promise<string> =>
  readFile(new URL(`../../config/${name}`, import.meta.url), "utf8");

// The committed examples are what operators copy; they must stay valid as the schemas change.
describe("config/*.example.json", () => {
  it("openai_api_keys.example.json is a valid product secret", async () => {
    const products = parseProducts(await read("openai_api_keys.example.json"));
    expect([...products.keys()]).toEqual(["product-dev", "product-local"]);
    expect(products.get("product-dev")?.models.get("echo-1")?.kind).toBe("echo");
  });

  it("jwt_public_keys.example.json is a valid JWT key secret", async () => {
    const jwks = await parseJwtKeys(await read("jwt_public_keys.example.json"));
    expect(jwks.keys.map((k) => [k.kid, k.alg])).toEqual([["example-2026-01", "ES256"]]);
  });

  it("hmac_secrets.example.json is a valid HMAC secret", async () => {
    const keys = parseHmacSecrets(await read("hmac_secrets.example.json"));
    expect([...keys.keys()]).toEqual(["batch-service", "admin-tool"]);
  });

  it("every provider example in the README's Providers section and docs/config.md is a valid provider entry", async () => {
    const readme = await readFile(new URL("../../README.md", import.meta.url), "utf8");
    const section = readme.slice(readme.indexOf("## Providers"), readme.indexOf("## Authentication"));
    const blocks = [...section.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1] ?? "");
    expect(blocks.length).toBeGreaterThanOrEqual(5);
    for (const block of blocks) {
      const products = parseProducts(JSON.stringify({ p: { providers: JSON.parse(block) as unknown } }));
      expect(products.get("p")?.providers).toHaveLength(1);
    }
    const config = await readFile(new URL("../../docs/config.md", import.meta.url), "utf8");
    const example = /### Providers[\s\S]*?```json\n([\s\S]*?)```/.exec(config)?.[1] ?? "";
    expect(
      parseProducts(example)
        .get("product-dev")
        ?.providers.map((p) => p.kind),
    ).toEqual(["anthropic", "gemini", "azure-openai"]);
  });
});
