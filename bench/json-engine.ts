// Micro-benchmark of the REST chat path's JSON work: check + normalize of a typical chat request and of a
// provider's answer and stream chunk (test/fixtures/openai/), by the JSON engine (src/json/) as built in
// dist/, and, with --before-ref, by the engine of an earlier commit in the same run: its
// src/http/rest-json-pass.ts (`passes` + `normalize`), transpiled into a temporary folder. Variants run
// interleaved, several rounds each, and the table gives medians; JSON.parse of the body is in every
// variant (as in the server) and measured alone as the baseline.
//
//   npm run build && npx node bench/json-engine.ts --before-ref=e653477 [--ms=1000] [--rounds=5] [--only=chunk,...]
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { pathToFileURL } from "node:url";
import type { DescMessage, JsonObject, JsonValue } from "@bufbuild/protobuf";
import ts from "typescript";
import { ROOT } from "./lib/paths.ts";

interface Engine {
  readonly request: (json: JsonObject) => void;
  readonly answer: (schema: DescMessage, json: JsonObject) => void;
}

const args = new Map(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, "").split("=");
    return [k ?? "", v ?? ""] as const;
  }),
);
const ms = Number(args.get("ms") ?? 1000);
const rounds = Number(args.get("rounds") ?? 5);
const beforeRef = args.get("before-ref");
/** Comma-separated input names (request-plain, request-tools, answer-plain, answer-tool-calls, chunk). */
const only = args.get("only")?.split(",");

const dist = path.join(ROOT, "dist");
if (!existsSync(path.join(dist, "src", "json", "index.js"))) {
  throw new Error("dist/src/json/index.js not found: run `npm run build` first");
}
const load = async <T>(file: string): Promise<T> => (await import(pathToFileURL(file).href)) as T;

const pb = await load<{
  ChatCompletionRequestSchema: DescMessage;
  ChatCompletionSchema: DescMessage;
  ChatCompletionChunkSchema: DescMessage;
}>(path.join(dist, "gen", "apikeyserver", "v1", "chat_pb.js"));
const json = await load<{
  readRequest: (schema: DescMessage, json: JsonValue) => JsonValue;
  readAnswer: (schema: DescMessage, json: JsonObject) => JsonObject | undefined;
}>(path.join(dist, "src", "json", "index.js"));

const engines = new Map<string, Engine>();
engines.set("engine (src/json)", {
  request: (body) => {
    json.readRequest(pb.ChatCompletionRequestSchema, body);
  },
  answer: (schema, body) => {
    if (json.readAnswer(schema, body) === undefined) throw new Error("answer refused");
  },
});

let tmp: string | undefined;
if (beforeRef !== undefined) {
  // The earlier engine, compiled alone next to links to this build's gen/ and node_modules/ (one copy of
  // @bufbuild/protobuf, the same descriptors).
  tmp = await mkdtemp(path.join(os.tmpdir(), "json-engine-before-"));
  const source = execFileSync("git", ["show", `${beforeRef}:src/http/rest-json-pass.ts`], {
    cwd: ROOT,
    encoding: "utf8",
  });
  const js = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2023 },
  }).outputText;
  await mkdir(path.join(tmp, "src", "http"), { recursive: true });
  await writeFile(path.join(tmp, "src", "http", "rest-json-pass.js"), js);
  await writeFile(path.join(tmp, "package.json"), '{"type":"module"}');
  await symlink(path.join(dist, "gen"), path.join(tmp, "gen"));
  await symlink(path.join(ROOT, "node_modules"), path.join(tmp, "node_modules"));
  const old = await load<{
    passes: (schema: DescMessage, json: JsonValue, keepUnknown: boolean) => boolean;
    normalize: (schema: DescMessage, json: JsonObject) => JsonObject;
  }>(path.join(tmp, "src", "http", "rest-json-pass.js"));
  engines.set(`passes + normalize (${beforeRef})`, {
    request: (body) => {
      if (!old.passes(pb.ChatCompletionRequestSchema, body, false)) throw new Error("request declined");
      old.normalize(pb.ChatCompletionRequestSchema, body);
    },
    answer: (schema, body) => {
      if (!old.passes(schema, body, true)) throw new Error("answer declined");
      old.normalize(schema, body);
    },
  });
}

const fixture = async (name: string): Promise<string> =>
  readFile(path.join(ROOT, "test", "fixtures", "openai", name), "utf8");
const withProduct = (text: string): string =>
  JSON.stringify({ ...(JSON.parse(text) as JsonObject), product: "p" });
const chunks = JSON.parse(await fixture("chat-completion-chunks.json")) as JsonObject[];
const inputs = [
  { name: "request-plain", text: withProduct(await fixture("request-plain.json")), kind: "request" },
  { name: "request-tools", text: withProduct(await fixture("request-tools.json")), kind: "request" },
  { name: "answer-plain", text: await fixture("chat-completion-plain.json"), kind: pb.ChatCompletionSchema },
  {
    name: "answer-tool-calls",
    text: await fixture("chat-completion-tool-calls.json"),
    kind: pb.ChatCompletionSchema,
  },
  { name: "chunk", text: JSON.stringify(chunks[1]), kind: pb.ChatCompletionChunkSchema },
] as const;
const measured = inputs.filter((input) => only === undefined || only.includes(input.name));

/** Operations per second of `op` over about `ms` milliseconds. */
function measure(op: () => void): number {
  for (let i = 0; i < 2000; i++) op();
  let n = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(ms) * 1_000_000n;
  let now = start;
  while (now < end) {
    for (let i = 0; i < 500; i++) op();
    n += 500;
    now = process.hrtime.bigint();
  }
  return n / (Number(now - start) / 1e9);
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
};

const results = new Map<string, number[]>();
const record = (key: string, opsPerSecond: number): void => {
  const list = results.get(key) ?? [];
  list.push(1e6 / opsPerSecond);
  results.set(key, list);
};

try {
  for (let round = 0; round < rounds; round++) {
    for (const input of measured) {
      record(
        `${input.name}|JSON.parse only`,
        measure(() => {
          JSON.parse(input.text);
        }),
      );
      // Alternate which engine goes first.
      const order = [...engines];
      if (round % 2 === 1) order.reverse();
      for (const [label, engine] of order) {
        const op =
          input.kind === "request"
            ? () => engine.request(JSON.parse(input.text) as JsonObject)
            : () => engine.answer(input.kind, JSON.parse(input.text) as JsonObject);
        record(`${input.name}|${label}`, measure(op));
      }
    }
  }
  const rows = [
    `| input | variant | µs/op (median of ${String(rounds)}) | minus JSON.parse |`,
    "|---|---|---:|---:|",
  ];
  for (const input of measured) {
    const parse = median(results.get(`${input.name}|JSON.parse only`) ?? []);
    rows.push(`| ${input.name} | JSON.parse only | ${parse.toFixed(2)} | |`);
    for (const label of engines.keys()) {
      const m = median(results.get(`${input.name}|${label}`) ?? []);
      rows.push(`| ${input.name} | ${label} | ${m.toFixed(2)} | ${(m - parse).toFixed(2)} |`);
    }
  }
  console.log(`Node ${process.version}, ${String(ms)} ms per measurement\n\n${rows.join("\n")}`);
} finally {
  if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
}
