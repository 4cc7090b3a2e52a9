import { execFile } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, request, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { ensureClaudeCode } from "../support/claude-code.js";
import { canaryKey, canaryPieces } from "../support/e2e-clients.js";
import {
  behaviors,
  startMockProvider,
  type MockProvider,
  type RecordedRequest,
} from "../support/mock-provider.js";
import { fixture } from "../upstream/helpers.js";

// Claude Code itself, headless (`claude -p … --output-format json`, HOME in a temporary folder), pointed at
// a product with the two environment variables of the README (ANTHROPIC_BASE_URL, ANTHROPIC_AUTH_TOKEN):
// a plain turn and a Bash tool round trip against an Anthropic-backed product, where the provider mock
// must receive Claude Code's body byte for byte and its anthropic-beta header, never the caller's token;
// and a plain turn against an OpenAI-backed product. A recording proxy in front of the server keeps what
// Claude Code sent.

type Json = Record<string, unknown>;
const model = "claude-opus-5-5";
const chunks = fixture<Json[]>("chat-completion-chunks.json");

/** Anthropic's stream of one answer: a text, or a tool_use of Bash. */
function anthropicStream(content: { text: string } | { command: string }): string[] {
  const usage = { input_tokens: 120, output_tokens: 1 };
  const start = {
    type: "message_start",
    message: {
      id: "msg_cc",
      type: "message",
      role: "assistant",
      content: [],
      model,
      stop_reason: null,
      stop_sequence: null,
      usage,
    },
  };
  const block =
    "text" in content
      ? [
          { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
          { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: content.text } },
        ]
      : [
          {
            type: "content_block_start",
            index: 0,
            content_block: { type: "tool_use", id: "toolu_cc1", name: "Bash", input: {} },
          },
          {
            type: "content_block_delta",
            index: 0,
            delta: {
              type: "input_json_delta",
              partial_json: JSON.stringify({ command: content.command, description: "Print a word" }),
            },
          },
        ];
  const events = [
    start,
    { type: "ping" },
    ...block,
    { type: "content_block_stop", index: 0 },
    {
      type: "message_delta",
      delta: { stop_reason: "text" in content ? "end_turn" : "tool_use", stop_sequence: null },
      usage: { output_tokens: 12 },
    },
    { type: "message_stop" },
  ];
  return events.map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
}

/** The last message of a Messages body carries a tool_result (the second call of a tool round trip). */
function hasToolResult(body: unknown): boolean {
  const messages = (body as { messages?: { content?: unknown }[] } | undefined)?.messages ?? [];
  const last = messages.at(-1)?.content;
  return Array.isArray(last) && last.some((b) => (b as Json)["type"] === "tool_result");
}

/** Whether a request is Claude Code's main turn (it offers the Bash tool), not a side call. */
function offersBash(body: unknown): boolean {
  const tools = (body as { tools?: Json[] } | undefined)?.tools ?? [];
  return tools.some((t) => t["name"] === "Bash");
}

interface Sent {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** A proxy that records each request as Claude Code sent it and relays it (and the answer, as it streams). */
async function startRecorder(target: string): Promise<{ url: string; sent: Sent[]; server: Server }> {
  const sent: Sent[] = [];
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () => {
      const body = Buffer.concat(parts);
      const path = req.url ?? "/";
      sent.push({ path, headers: req.headers, body });
      const upstream = request(`${target}${path}`, { method: req.method, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      upstream.on("error", () => res.destroy());
      upstream.end(body);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, sent, server };
}

let claude: string;
let mock: MockProvider;
let app: AppHarness;
let recorder: Awaited<ReturnType<typeof startRecorder>>;
let token: string;
let home: string;

beforeAll(async () => {
  claude = await ensureClaudeCode();
  mock = await startMockProvider(
    behaviors.choose((req) => {
      if (req.path.startsWith("/v1/chat/completions")) return behaviors.sse(chunks);
      if (hasToolResult(req.body))
        return behaviors.sseFrames(anthropicStream({ text: "The command printed it." }));
      if (offersBash(req.body) && JSON.stringify(req.body).includes("run-the-tool"))
        return behaviors.sseFrames(anthropicStream({ command: "echo hi-from-bash" }));
      return behaviors.sseFrames(anthropicStream({ text: "Hello from the mock." }));
    }),
  );
  app = await startApp({
    products: {
      "product-claude": {
        providers: { anthropic: { api_key: canaryKey, base_url: mock.url, models: [model] } },
      },
      "product-openai": {
        providers: { openai: { api_key: canaryKey, base_url: `${mock.url}/v1`, models: [model] } },
      },
    },
    // Claude Code asks for max_tokens 128000: a product meant for it needs a cap at least that high.
    env: { API_KEY_SERVER_MAX_TOKENS: "128000" },
    logLevel: "info",
  });
  recorder = await startRecorder(app.url);
  token = await app.token({ claims: { products: ["product-claude", "product-openai"] } });
  home = await mkdtemp(join(tmpdir(), "aks-claude-code-"));
}, 900_000);
afterAll(async () => {
  await app?.close();
  await mock?.close();
  recorder?.server.closeAllConnections();
  recorder?.server.close();
  if (home !== undefined) await rm(home, { recursive: true, force: true });
});

/** Runs Claude Code headless against a product; resolves with its JSON output. */
function runClaude(product: string, prompt: string, extra: readonly string[] = []): Promise<Json> {
  return new Promise((resolve, reject) => {
    execFile(
      claude,
      ["-p", prompt, "--output-format", "json", ...extra],
      {
        cwd: home,
        timeout: 120_000,
        env: {
          PATH: process.env["PATH"] ?? "/usr/bin:/bin",
          HOME: home,
          ANTHROPIC_BASE_URL: `${recorder.url}/anthropic/${product}`,
          ANTHROPIC_AUTH_TOKEN: token,
          ANTHROPIC_MODEL: model,
          ANTHROPIC_SMALL_FAST_MODEL: model,
          ANTHROPIC_DEFAULT_HAIKU_MODEL: model,
          CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
          DISABLE_AUTOUPDATER: "1",
          CLAUDE_CODE_MAX_RETRIES: "1",
        },
      },
      (err, stdout, stderr) => {
        try {
          resolve(JSON.parse(stdout) as Json);
        } catch {
          reject(
            new Error(
              `claude failed (${err?.message ?? "exit 0"}): ${stdout.slice(-2000)} ${stderr.slice(-2000)}`,
            ),
          );
        }
      },
    );
  });
}

/** The mock's request that relayed the recorder's request `sent` (same body bytes). */
function relayedAs(sent: Sent): RecordedRequest | undefined {
  return mock.requests.find((r) => r.rawBody === sent.body.toString("utf8"));
}

describe("Claude Code through the Anthropic surface", () => {
  it("a plain turn against an Anthropic-backed product: body byte for byte, anthropic-beta passed, no caller token upstream", async () => {
    const from = recorder.sent.length;
    const out = await runClaude("product-claude", "Say hello");
    expect(out["result"]).toBe("Hello from the mock.");
    const turns = recorder.sent
      .slice(from)
      .filter((s) => s.path.startsWith("/anthropic/product-claude/v1/messages?beta=true"));
    expect(turns.length).toBeGreaterThan(0);
    for (const turn of turns) {
      const upstream = relayedAs(turn);
      expect(upstream, "the mock got Claude Code's body byte for byte").toBeDefined();
      expect(upstream?.path).toBe("/v1/messages?beta=true");
      expect(upstream?.headers["anthropic-beta"]).toBe(turn.headers["anthropic-beta"]);
      expect(upstream?.headers["anthropic-version"]).toBe(turn.headers["anthropic-version"]);
      expect(upstream?.headers["x-api-key"]).toBe(canaryKey);
      expect(upstream?.headers["authorization"]).toBeUndefined();
      expect(JSON.stringify(upstream?.headers) + (upstream?.rawBody ?? "")).not.toContain(token);
    }
    expect(turns.some((t) => typeof t.headers["anthropic-beta"] === "string")).toBe(true);
  });

  it("a Bash tool round trip against an Anthropic-backed product", async () => {
    const from = mock.requests.length;
    const out = await runClaude("product-claude", "Please run-the-tool now", ["--allowedTools", "Bash"]);
    expect(out["result"]).toBe("The command printed it.");
    const second = mock.requests.slice(from).find((r) => hasToolResult(r.body));
    expect(second).toBeDefined();
    expect(second?.rawBody).toContain("hi-from-bash");
  });

  it("a plain turn against an OpenAI-backed product (translated)", async () => {
    const from = mock.requests.length;
    const out = await runClaude("product-openai", "Say hello");
    expect(out["result"]).toBe("Hello");
    const upstream = mock.requests.slice(from).filter((r) => r.path === "/v1/chat/completions");
    expect(upstream.length).toBeGreaterThan(0);
    expect(upstream[0]?.headers["authorization"]).toBe(`Bearer ${canaryKey}`);
  });

  it("no provider key or caller token in any answer or log line", () => {
    const logs = app.logs.text();
    for (const piece of [...canaryPieces, token]) expect(logs).not.toContain(piece);
  });
});
