import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMetrics } from "../../src/metrics/index.js";

/**
 * The PromQL an operator copies from the README and the runbook (§5) must parse (`promtool check rules`)
 * and name only series the server has, so a renamed metric cannot leave the documents behind.
 */

const run = promisify(execFile);
const root = new URL("../../", import.meta.url);
const documents = ["README.md", "docs/runbook.ja.md"] as const;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "aks-promql-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The inline-code PromQL of the document's tables: every `...` cell that calls rate( or histogram_quantile(. */
function tableExpressions(text: string): string[] {
  const found = new Set<string>();
  for (const line of text.split("\n")) {
    if (!line.startsWith("|")) continue;
    for (const match of line.matchAll(/`([^`]+)`/g)) {
      const expr = match[1] ?? "";
      if (/\b(rate|histogram_quantile)\(/.test(expr)) found.add(expr);
    }
  }
  return [...found];
}

/** The document's YAML block that starts with `groups:` (the alert examples). */
function alertRules(text: string): string {
  const match = /```yaml\n(groups:\n[\s\S]*?)```/.exec(text);
  if (match?.[1] === undefined) throw new Error("no ```yaml groups: block");
  return match[1];
}

async function checkRules(name: string, yaml: string): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, yaml);
  const { stdout } = await run("promtool", ["check", "rules", file]);
  return stdout;
}

/** Every series name the server can expose, from the `# TYPE` lines (histograms with their suffixes). */
async function knownNames(): Promise<Set<string>> {
  const metrics = createMetrics({ version: "t", products: () => undefined, limiterSource: "memory" });
  const names = new Set<string>();
  for (const [, name, type] of (await metrics.registry.metrics()).matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    if (name === undefined) continue;
    names.add(name);
    if (type === "histogram") for (const suffix of ["_bucket", "_sum", "_count"]) names.add(name + suffix);
  }
  return names;
}

describe.each(documents)("%s", (document) => {
  it("its indicator expressions parse and name existing series", async () => {
    const text = await readFile(new URL(document, root), "utf8");
    const expressions = tableExpressions(text);
    expect(expressions.length).toBeGreaterThanOrEqual(6);
    const rules = [
      "groups:",
      "  - name: documented",
      "    rules:",
      ...expressions.map(
        (expr, i) => `      - record: documented:expr${i}\n        expr: ${JSON.stringify(expr)}`,
      ),
    ].join("\n");
    expect(await checkRules("exprs.yaml", `${rules}\n`)).toContain(
      `SUCCESS: ${expressions.length} rules found`,
    );
    const names = await knownNames();
    for (const expr of expressions) {
      for (const name of expr.match(/\bapi_key_server_[a-z_]+/g) ?? []) expect(names, expr).toContain(name);
    }
  });

  it("its two alert rules pass promtool check rules", async () => {
    const text = await readFile(new URL(document, root), "utf8");
    expect(await checkRules("alerts.yaml", alertRules(text))).toContain("SUCCESS: 2 rules found");
  });
});
