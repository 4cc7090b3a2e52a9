import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { repoRoot } from "../support/server-process.js";

// docs/budgets.md routes the access lines into BigQuery and sums spend per product per day: every
// `jsonPayload` field the sink's filter and the query use must be in a priced call's access line, with the
// type the query needs (a number to SUM, a string to GROUP BY), and the line's `time` becomes the
// LogEntry's `timestamp` the query groups by day.

const doc = await readFile(join(repoRoot, "docs/budgets.md"), "utf8");
const sql = /```sql\n([\s\S]*?)```/.exec(doc)?.[1] ?? "";
const sink = /gcloud logging sinks create[\s\S]*?--log-filter='([^']*)'/.exec(doc)?.[1] ?? "";

let app: AppHarness;

beforeAll(async () => {
  app = await startApp({
    products: {
      "product-dev": {
        providers: { echo: { models: ["echo-1"] } },
        prices: { "echo-1": { input: 2.5, output: 10 } },
      },
    },
  });
});

afterAll(async () => {
  await app.close();
});

describe("the BigQuery query of docs/budgets.md against a real access line", () => {
  it("finds the query and the sink filter in the doc", () => {
    expect(sql).toContain("GROUP BY day, product");
    expect(sink).toContain("jsonPayload.totalTokens>0");
  });

  it("every jsonPayload field they use is in a priced call's access line, with the right type", async () => {
    const res = await fetch(`${app.url}/v1/chat/product-dev`, {
      method: "POST",
      headers: { authorization: `Bearer ${await app.token()}`, "content-type": "application/json" },
      body: JSON.stringify({
        model: "echo-1",
        messages: [{ role: "user", content: "What does this cost?" }],
      }),
    });
    expect(res.status).toBe(200);
    await res.text();
    let line: Record<string, unknown> | undefined;
    for (let i = 0; i < 200 && line === undefined; i++) {
      line = app.logs.records().find((r) => r["totalTokens"] !== undefined);
      if (line === undefined) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const fields = [
      ...new Set([...`${sql}\n${sink}`.matchAll(/jsonPayload\.(\w+)/g)].map((m) => m[1] ?? "")),
    ];
    expect(fields.sort()).toStrictEqual(["costUsd", "product", "totalTokens"]);
    const types = Object.fromEntries(fields.map((f) => [f, typeof line?.[f]]));
    expect(types).toStrictEqual({ costUsd: "number", product: "string", totalTokens: "number" });
    expect(line?.["costUsd"]).toBeGreaterThan(0);
    // cost = prompt × 2.5 + completion × 10 USD per million tokens.
    const expected =
      ((line?.["promptTokens"] as number) * 2.5 + (line?.["completionTokens"] as number) * 10) / 1e6;
    expect(line?.["costUsd"]).toBeCloseTo(expected, 12);
    expect(Number.isNaN(Date.parse(String(line?.["time"])))).toBe(false);
  });
});
