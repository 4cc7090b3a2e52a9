import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";

/**
 * scripts/audit.mjs (README, "Operations") against a registry on a local port: npm audit's own path when
 * the advisory endpoint answers, and the fallback (packuments: deprecated fails, outdated is reported) when
 * it refuses the POST with 405 as this machine's registry does, always with the loud warning.
 */

interface Registry {
  /** What POST /-/npm/v1/security/advisories/bulk answers: a status and JSON body. */
  audit: { status: number; body?: unknown };
  /** Versions marked deprecated, as name@version → message. */
  deprecated: Map<string, string>;
  /** Extra versions listed in a packument, by name. */
  extra: Map<string, string[]>;
  /** Packuments answer this status instead (500: a registry that is down). */
  packumentStatus: number;
  requests: string[];
}

let server: Server;
let url: string;
const registry: Registry = {
  audit: { status: 405 },
  deprecated: new Map(),
  extra: new Map(),
  packumentStatus: 200,
  requests: [],
};
/** Production package name → version, from the lockfile. */
const versions = new Map<string, string>();

beforeAll(async () => {
  const lock = JSON.parse(await readFile("package-lock.json", "utf8")) as {
    packages: Record<string, { version?: string; dev?: boolean; name?: string }>;
  };
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path === "" || entry.dev === true || entry.version === undefined) continue;
    versions.set(entry.name ?? path.slice(path.lastIndexOf("node_modules/") + 13), entry.version);
  }
  server = createServer((req, res) => {
    registry.requests.push(`${req.method} ${req.url}`);
    req.resume();
    if (req.method === "POST") {
      const { status, body } = registry.audit;
      if (status === 405) res.writeHead(405, { allow: "GET,HEAD" }).end();
      else res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body ?? {}));
      return;
    }
    const name = decodeURIComponent((req.url ?? "/").slice(1));
    const version = versions.get(name);
    if (registry.packumentStatus !== 200 || version === undefined) {
      res.writeHead(version === undefined ? 404 : registry.packumentStatus).end();
      return;
    }
    const all = [version, ...(registry.extra.get(name) ?? [])];
    const doc = {
      name,
      "dist-tags": { latest: version },
      versions: Object.fromEntries(
        all.map((v) => {
          const deprecated = registry.deprecated.get(`${name}@${v}`);
          return [v, { name, version: v, ...(deprecated === undefined ? {} : { deprecated }) }];
        }),
      ),
    };
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(doc));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
beforeEach(() => {
  registry.audit = { status: 405 };
  registry.deprecated.clear();
  registry.extra.clear();
  registry.packumentStatus = 200;
  registry.requests.length = 0;
});

function audit(env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["scripts/audit.mjs"],
      {
        env: {
          ...process.env,
          npm_config_registry: url,
          npm_config_cache_min: "0",
          AUDIT_REQUIRED: "",
          ...env,
        },
        timeout: 60_000,
      },
      (error, stdout, stderr) =>
        resolve({ code: error === null ? 0 : Number(error.code ?? 1), out: `${stdout}${stderr}` }),
    );
  });
}

const loud = "NO VULNERABILITY AUDIT WAS DONE";

describe("scripts/audit.mjs", () => {
  it("passes on npm audit's own answer when the advisory endpoint answers without findings", async () => {
    registry.audit = { status: 200, body: {} };
    const { code, out } = await audit();
    expect(out).toContain("npm audit --omit=dev: 0 finding(s), 0 unexplained");
    expect(out).not.toContain(loud);
    expect(code).toBe(0);
  });

  it("fails on an advisory npm audit reports and nobody explained", async () => {
    const [name, version] = [...versions][0] ?? ["", ""];
    registry.audit = {
      status: 200,
      body: {
        [name]: [
          {
            id: 1,
            url: "https://example.invalid/advisory",
            title: "test advisory",
            severity: "high",
            vulnerable_versions: `<=${version}`,
            cwe: [],
            cvss: { score: 0, vectorString: null },
          },
        ],
      },
    };
    const { code, out } = await audit();
    expect(out).toContain(`high ${name}`);
    expect(out).toContain("NOT EXPLAINED");
    expect(code).toBe(1);
  });

  it("says loudly that no audit ran when the endpoint answers 405, checks every production package, and passes", async () => {
    const { code, out } = await audit();
    expect(out).toContain("405 Method Not Allowed");
    expect(out).toContain(loud);
    expect(out).toMatch(new RegExp(`fallback: ${versions.size} production package version\\(s\\)`));
    expect(out).toContain("0 deprecated");
    expect(code).toBe(0);
    // One packument per name, each asked once.
    const gets = registry.requests.filter((r) => r.startsWith("GET "));
    expect(new Set(gets).size).toBe(gets.length);
    expect(gets.length).toBeGreaterThanOrEqual(versions.size);
  });

  it("fails on a deprecated production version and reports a newer release in the same major", async () => {
    const [[deprecatedName, deprecatedVersion], [outdatedName, outdatedVersion]] = [...versions].filter(
      ([, v]) => /^\d+\.\d+\.\d+$/.test(v),
    ) as [[string, string], [string, string]];
    registry.deprecated.set(`${deprecatedName}@${deprecatedVersion}`, "use something else");
    const [major, minor] = outdatedVersion.split(".");
    registry.extra.set(outdatedName, [`${major}.${Number(minor) + 1}.0`, `${Number(major) + 1}.0.0`]);
    const { code, out } = await audit();
    expect(out).toContain(
      `DEPRECATED ${deprecatedName}@${deprecatedVersion}: use something else (NOT EXPLAINED)`,
    );
    expect(out).toContain(
      `outdated within its major: ${outdatedName} ${outdatedVersion} → ${major}.${Number(minor) + 1}.0`,
    );
    expect(out).toContain(loud);
    expect(code).toBe(1);
  });

  it("fails when the registry answers no packument at all", async () => {
    registry.packumentStatus = 500;
    const { code, out } = await audit();
    expect(out).toContain(loud);
    expect(out).toMatch(/NOT CHECKED .*HTTP 500/);
    expect(code).toBe(1);
  });

  it("fails with AUDIT_REQUIRED=true when no vulnerability audit could run, however clean the fallback", async () => {
    const { code, out } = await audit({ AUDIT_REQUIRED: "true" });
    expect(out).toContain("0 deprecated");
    expect(code).toBe(1);
  });
});
