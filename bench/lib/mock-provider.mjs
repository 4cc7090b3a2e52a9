// Mock OpenAI provider for the benchmark. Runs in its own process (forked by run.ts) so its CPU is
// not charged to the process under test. It answers POST .../chat/completions with one fixed body;
// the path may start with /delay/<ms>/ so that one mock serves both the fast and the slow scenarios
// (the server reaches it through a product whose base_url carries the prefix, the forwarder by
// forwarding the path unchanged). A request with "stream": true gets an OpenAI-style SSE answer. A path
// starting with /status/<code>/ answers that status with an OpenAI error body (the soak's upstream errors).
// A /chunks/<n>/ prefix (before or after /delay/<ms>/) makes a streamed answer carry n content chunks,
// sent one every <ms>/n ms after the role chunk, then the finish and usage chunks and [DONE] (sse-1000).
import { Buffer } from "node:buffer";
import http from "node:http";
import { serveForBench } from "./serve.mjs";
import { setTimeout } from "node:timers";

const COMPLETION = JSON.stringify({
  id: "chatcmpl-bench",
  object: "chat.completion",
  created: 1_700_000_000,
  model: "gpt-4o-mini",
  choices: [
    {
      index: 0,
      message: { role: "assistant", content: "Hello! How can I help you today?", refusal: null },
      logprobs: null,
      finish_reason: "stop",
    },
  ],
  usage: { prompt_tokens: 9, completion_tokens: 9, total_tokens: 18 },
  system_fingerprint: "fp_bench",
});
const COMPLETION_BYTES = Buffer.from(COMPLETION);

/** Words of the streamed answer; one SSE chunk each, then a usage chunk and [DONE]. */
const STREAM_WORDS = ["Hello!", " How", " can", " I", " help?"];

function chunk(delta, finishReason) {
  return `data: ${JSON.stringify({
    id: "chatcmpl-bench",
    object: "chat.completion.chunk",
    created: 1_700_000_000,
    model: "gpt-4o-mini",
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
  })}\n\n`;
}

const STREAM_EVENTS = [
  chunk({ role: "assistant", content: "" }, null),
  ...STREAM_WORDS.map((word) => chunk({ content: word }, null)),
  chunk({}, "stop"),
  `data: ${JSON.stringify({
    id: "chatcmpl-bench",
    object: "chat.completion.chunk",
    created: 1_700_000_000,
    model: "gpt-4o-mini",
    choices: [],
    usage: { prompt_tokens: 9, completion_tokens: 5, total_tokens: 14 },
  })}\n\n`,
  "data: [DONE]\n\n",
];

const DELAY_PREFIX = /^\/delay\/(\d+)(\/.*)$/;
const CHUNKS_PREFIX = /^\/chunks\/(\d+)(\/.*)$/;
const STATUS_PREFIX = /^\/status\/([1-5]\d\d)\//;

function sendJson(res, status, body) {
  const bytes = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { "content-type": "application/json", "content-length": bytes.length });
  res.end(bytes);
}

/** Sends the SSE events spread over `delayMs` (the first one right away), like a model that types. */
function sendStream(res, delayMs) {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  const gap = delayMs / STREAM_EVENTS.length;
  let next = 0;
  const tick = () => {
    const event = STREAM_EVENTS[next++];
    if (event === undefined) {
      res.end();
      return;
    }
    res.write(event);
    if (gap > 0) setTimeout(tick, gap);
    else tick();
  };
  tick();
}

/** The SSE answer with `n` content chunks: "c1 ", "c2 ", ... (the sse-1000 scenario counts them). */
function chunkedEvents(n) {
  return [
    chunk({ role: "assistant", content: "" }, null),
    ...Array.from({ length: n }, (_, i) => chunk({ content: `c${i + 1} ` }, null)),
    chunk({}, "stop"),
    STREAM_EVENTS.at(-2),
    STREAM_EVENTS.at(-1),
  ];
}

/**
 * Sends the role chunk at once, then the n content chunks one every delayMs/n, then the finish chunk, the
 * usage chunk and [DONE] right after the last content chunk.
 */
function sendChunks(res, delayMs, n) {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  const events = chunkedEvents(n);
  res.write(events[0]);
  let sent = 0;
  const tick = () => {
    sent += 1;
    if (sent < n) {
      res.write(events[sent]);
      setTimeout(tick, delayMs / n);
      return;
    }
    res.end(events.slice(sent).join(""));
  };
  if (n === 0) res.end(events.slice(1).join(""));
  else setTimeout(tick, delayMs / n);
}

const server = http.createServer((req, res) => {
  let path = req.url ?? "/";
  let delayMs = 0;
  let chunkCount;
  for (;;) {
    const delayed = DELAY_PREFIX.exec(path);
    if (delayed !== null) {
      delayMs = Number(delayed[1]);
      path = delayed[2] ?? "/";
      continue;
    }
    const chunked = CHUNKS_PREFIX.exec(path);
    if (chunked !== null) {
      chunkCount = Number(chunked[1]);
      path = chunked[2] ?? "/";
      continue;
    }
    break;
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const failing = STATUS_PREFIX.exec(path);
    if (failing !== null) {
      sendJson(res, Number(failing[1]), { error: { message: "mock failure", type: "server_error" } });
      return;
    }
    if (req.method !== "POST" || path !== "/v1/chat/completions") {
      sendJson(res, 404, {
        error: { message: `no route ${req.method} ${path}`, type: "invalid_request_error" },
      });
      return;
    }
    // Only look for the stream flag: parsing the whole body would make the mock slower than needed
    // without changing what the proxies see.
    const streaming = /"stream"\s*:\s*true/.test(Buffer.concat(chunks).toString("utf8"));
    if (streaming && chunkCount !== undefined) {
      sendChunks(res, delayMs, chunkCount);
      return;
    }
    if (streaming) {
      sendStream(res, delayMs);
      return;
    }
    const answer = () => {
      res.writeHead(200, { "content-type": "application/json", "content-length": COMPLETION_BYTES.length });
      res.end(COMPLETION_BYTES);
    };
    if (delayMs > 0) setTimeout(answer, delayMs);
    else answer();
  });
});
// Proxies keep pooled connections open between rounds; never let a helper be the one that drops them.
serveForBench(server);
