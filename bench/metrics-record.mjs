#!/usr/bin/env node
// The CPU the metrics add to one chat call, measured without a server: the hooks one successful call runs
// (the request's recording, here through requestEnded, which the edge entry's exchangeEnded shares; the
// forwarder's report; the limiter's decision) called in a loop on the
// built registry (dist/), plus one scrape per 5,000 calls. A figure the shared host's noise barely moves,
// to read next to `npm run bench -- --metrics compare`. Usage: node bench/metrics-record.mjs [calls]

import { existsSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const entry = path.join(ROOT, "dist/src/metrics/index.js");
if (!existsSync(entry)) {
  process.stderr.write("dist/src/metrics/index.js not found: run `npm run build` first\n");
  process.exit(1);
}
const { createMetrics } = await import(pathToFileURL(entry).href);
const { parseProducts } = await import(pathToFileURL(path.join(ROOT, "dist/src/secrets/index.js")).href);

const calls = Number(process.argv[2] ?? 2_000_000);
const products = parseProducts(
  JSON.stringify({ bench: { providers: { openai: { api_key: "sk-x", models: ["gpt-4o-mini"] } } } }),
);
const provider = products.get("bench").models.get("gpt-4o-mini");
const metrics = createMetrics({ version: "bench", products: () => products, limiterSource: "memory" });
const decision = {
  allowed: true,
  limit: 600,
  remaining: 599,
  resetMs: 100,
  retryAfterMs: 0,
  source: "memory",
};

function oneCall(i) {
  metrics.rateLimitDecided("requests", decision);
  metrics.upstreamCallEnded({
    provider,
    model: "gpt-4o-mini",
    outcome: "ok",
    durationSeconds: 0.0005 + (i % 7) * 0.0001,
    firstEventSeconds: undefined,
  });
  metrics.requestEnded({
    rpc: "apikeyserver.v1.ChatService/CreateChatCompletion",
    protocol: "rest",
    product: "bench",
    model: "gpt-4o-mini",
    status: 200,
    code: "OK",
    durationSeconds: 0.001 + (i % 5) * 0.0002,
    promptTokens: 9,
    completionTokens: 2,
  });
}

async function run(n) {
  const started = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    oneCall(i);
    if (i % 5000 === 4999) await metrics.registry.metrics();
  }
  const used = process.cpuUsage(started);
  return ((used.user + used.system) * 1000) / n; // ns per call
}

await run(Math.min(calls, 200_000)); // warm-up: JIT and every series created
const rounds = [];
for (let r = 0; r < 5; r++) rounds.push(await run(calls));
rounds.sort((a, b) => a - b);
process.stdout.write(
  `metrics recording per chat call: median ${rounds[2].toFixed(0)} ns of CPU ` +
    `(5 rounds of ${calls.toLocaleString("en-US")} calls, one scrape per 5,000; min ${rounds[0].toFixed(0)}, max ${rounds[4].toFixed(0)} ns)\n`,
);
