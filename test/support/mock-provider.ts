import { once } from "node:events";
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/**
 * What the mock provider does with each request, until changed. Each variant is one way a real provider
 * answers or misbehaves; build them with the `behaviors` helpers below.
 */
export type Behavior =
  /** A status with a JSON body (any value, serialised) and extra headers. */
  | { readonly kind: "json"; readonly status: number; readonly body: unknown; readonly headers?: Headers }
  /** A status with a body sent byte for byte (invalid JSON, an HTML error page, ...). */
  | {
      readonly kind: "raw";
      readonly status: number;
      readonly body: string;
      readonly contentType: string;
      readonly headers?: Headers;
    }
  /** Waits before sending any header, then behaves as `then`. */
  | { readonly kind: "delay"; readonly ms: number; readonly then: Behavior }
  /** Sends the headers and the start of a body, then never another byte. */
  | {
      readonly kind: "stall";
      readonly status: number;
      readonly partialBody: string;
      readonly contentType: string;
    }
  /** Destroys the connection, optionally after the headers and part of a body. */
  | { readonly kind: "reset"; readonly partialBody: string | undefined }
  /** A 3xx with a Location (must never be followed). */
  | { readonly kind: "redirect"; readonly status: number; readonly location: string }
  /** A 200 JSON body of `bytes` bytes, with or without a Content-Length announcing it. */
  | { readonly kind: "oversized"; readonly bytes: number; readonly declareLength: boolean }
  /** A 200 `text/event-stream` of whole SSE frames written one by one, then how it ends. */
  | {
      readonly kind: "sse";
      readonly frames: readonly string[];
      readonly end: "close" | "reset" | "stall";
      /** Writes every frame in two halves, to exercise parsers that get partial lines. */
      readonly splitWrites: boolean;
      /** Pause between writes (0: the next event-loop turn). */
      readonly intervalMs: number;
    }
  /** Decides per request (by its key header, its path, how many came before, ...). */
  | { readonly kind: "choose"; readonly pick: (req: RecordedRequest, index: number) => Behavior }
  /** Anything else: full control of the response. */
  | {
      readonly kind: "handler";
      readonly handle: (req: RecordedRequest, res: ServerResponse) => void;
    };

type Headers = Readonly<Record<string, string>>;

export const behaviors = {
  json: (status: number, body: unknown, headers?: Headers): Behavior =>
    headers === undefined ? { kind: "json", status, body } : { kind: "json", status, body, headers },
  raw: (status: number, body: string, contentType = "text/plain"): Behavior => ({
    kind: "raw",
    status,
    body,
    contentType,
  }),
  invalidJson: (status = 200): Behavior => ({
    kind: "raw",
    status,
    body: '{"id": "chatcmpl-1", "choices": [',
    contentType: "application/json",
  }),
  html: (status = 200): Behavior => ({
    kind: "raw",
    status,
    body: "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>",
    contentType: "text/html; charset=utf-8",
  }),
  delay: (ms: number, then: Behavior): Behavior => ({ kind: "delay", ms, then }),
  stall: (partialBody = '{"id": "chatcmpl-1", ', contentType = "application/json"): Behavior => ({
    kind: "stall",
    status: 200,
    partialBody,
    contentType,
  }),
  reset: (partialBody?: string): Behavior => ({ kind: "reset", partialBody }),
  redirect: (location: string, status = 302): Behavior => ({ kind: "redirect", status, location }),
  oversized: (bytes: number, declareLength = false): Behavior => ({
    kind: "oversized",
    bytes,
    declareLength,
  }),
  /**
   * OpenAI's stream: each event's `data:` (objects serialised, strings raw), then `data: [DONE]` ("done"),
   * the connection closed without it ("truncate"), reset, or left open ("stall").
   */
  sse: (
    events: readonly unknown[],
    end: "done" | "truncate" | "reset" | "stall" = "done",
    splitWrites = false,
    intervalMs = 0,
  ): Behavior => {
    const frames = events.map((e) => `data: ${typeof e === "string" ? e : JSON.stringify(e)}\n\n`);
    if (end === "done") frames.push("data: [DONE]\n\n");
    return {
      kind: "sse",
      frames,
      end: end === "done" || end === "truncate" ? "close" : end,
      splitWrites,
      intervalMs,
    };
  },
  /**
   * OpenAI's stream as OpenAI decides it from the request: `chunks` is the stream with
   * `stream_options.include_usage` (`"usage": null` on each chunk, then the usage-only chunk); a request that
   * did not ask for usage gets it without them (`openAiChunks`), as OpenAI sends it.
   */
  openAiStream: (chunks: readonly Record<string, unknown>[], intervalMs = 0): Behavior => ({
    kind: "choose",
    pick: (req) => behaviors.sse(openAiChunks(chunks, asksForUsage(req.body)), "done", false, intervalMs),
  }),
  /** Any provider's stream as whole frames (`event: x\ndata: {...}\n\n`), ended by closing unless told. */
  sseFrames: (
    frames: readonly string[],
    end: "close" | "reset" | "stall" = "close",
    options: { splitWrites?: boolean; intervalMs?: number } = {},
  ): Behavior => ({
    kind: "sse",
    frames,
    end,
    splitWrites: options.splitWrites ?? false,
    intervalMs: options.intervalMs ?? 0,
  }),
  choose: (pick: (req: RecordedRequest, index: number) => Behavior): Behavior => ({ kind: "choose", pick }),
  handler: (handle: (req: RecordedRequest, res: ServerResponse) => void): Behavior => ({
    kind: "handler",
    handle,
  }),
};

/** Whether a request body has `stream_options.include_usage: true`. */
export function asksForUsage(body: unknown): boolean {
  if (typeof body !== "object" || body === null) return false;
  const options = (body as Record<string, unknown>)["stream_options"];
  return (
    typeof options === "object" &&
    options !== null &&
    (options as Record<string, unknown>)["include_usage"] === true
  );
}

/**
 * The chunks OpenAI sends for a request with (`includeUsage`) or without `stream_options.include_usage`,
 * from the stream it sends with it: without, no chunk has a `usage` key and the usage-only chunk is absent.
 */
export function openAiChunks(
  withUsage: readonly Record<string, unknown>[],
  includeUsage: boolean,
): Record<string, unknown>[] {
  if (includeUsage) return withUsage.map((c) => ({ ...c }));
  return withUsage
    .filter((c) => !(Array.isArray(c["choices"]) && c["choices"].length === 0 && c["usage"] != null))
    .map(({ usage: _usage, ...rest }) => rest);
}

/**
 * The chunks of a streamed tool call after the one that opens it (`id`, `function.name`): the arguments
 * `{"a":1}` in two deltas, then `finish_reason: "tool_calls"`. `base` carries the id, object and model.
 */
export function toolArgumentChunks(base: Record<string, unknown>): Record<string, unknown>[] {
  const argument = (text: string) => ({
    ...base,
    choices: [
      { index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: text } }] }, finish_reason: null },
    ],
  });
  return [
    argument('{"a":'),
    argument("1}"),
    { ...base, choices: [{ index: 0, delta: {}, finish_reason: "tool_calls" }] },
  ];
}

/** One request as the mock received it. */
export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  /** The raw body text. */
  readonly rawBody: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  readonly body: unknown;
}

export interface MockProvider {
  /** Base URL, e.g. `http://127.0.0.1:PORT` (append `/v1` or not: every path is answered). */
  readonly url: string;
  setBehavior(behavior: Behavior): void;
  /** Every request received, in order. */
  readonly requests: RecordedRequest[];
  /** Distinct TCP connections accepted so far (for connection reuse tests). */
  readonly connectionsSeen: number;
  /** Requests whose client went away before the response was complete. */
  readonly aborted: number;
  /** Resolves once `aborted` reaches `count` (no polling, no sleeps). */
  whenAborted(count: number): Promise<void>;
  /** Resolves once `requests.length` reaches `count`. */
  whenRequested(count: number): Promise<void>;
  /** Destroys every connection (stalled ones too) and stops listening. */
  close(): Promise<void>;
}

/** A minimal valid OpenAI chat completion, the default answer. */
export const defaultCompletion = {
  id: "chatcmpl-mock",
  object: "chat.completion",
  created: 1_700_000_000,
  model: "gpt-4o-mini",
  choices: [
    {
      index: 0,
      message: { role: "assistant", content: "Hello!", refusal: null, annotations: [] },
      logprobs: null,
      finish_reason: "stop",
    },
  ],
  usage: { prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 },
  service_tier: "default",
  system_fingerprint: null,
};

/**
 * Starts an HTTP/1.1 provider on 127.0.0.1, port 0, that answers every request with the current behavior
 * (default: 200 with `defaultCompletion`) and records what it received.
 */
export async function startMockProvider(
  initial: Behavior = behaviors.json(200, defaultCompletion),
): Promise<MockProvider> {
  let behavior = initial;
  let connectionsSeen = 0;
  let aborted = 0;
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of waiters) w();
  };
  const waitFor = (test: () => boolean) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (test()) {
          waiters.delete(check);
          resolve();
        }
      };
      waiters.add(check);
      check();
    });

  const server = createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
    let killed = false;
    res.on("close", () => {
      if (!res.writableFinished && !killed) {
        aborted++;
        notify();
      }
    });
    // Writes after the client left raise EPIPE/ECONNRESET here; that is the point of many tests.
    res.on("error", () => undefined);
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const rawBody = Buffer.concat(chunks).toString("utf8");
      let body: unknown;
      try {
        body = JSON.parse(rawBody);
      } catch {
        body = undefined;
      }
      const recorded = { method: req.method ?? "", path: req.url ?? "", headers: req.headers, rawBody, body };
      requests.push(recorded);
      notify();
      respond(behavior, recorded, req, res, () => (killed = true));
    });
  });
  server.on("connection", (socket: Socket) => {
    connectionsSeen++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });

  function later(ms: number, fn: () => void) {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  }

  function respond(
    b: Behavior,
    recorded: RecordedRequest,
    req: IncomingMessage,
    res: ServerResponse,
    kill: () => void,
  ) {
    switch (b.kind) {
      case "json":
        res.writeHead(b.status, { "content-type": "application/json", ...b.headers });
        res.end(JSON.stringify(b.body));
        return;
      case "raw":
        res.writeHead(b.status, { "content-type": b.contentType, ...b.headers });
        res.end(b.body);
        return;
      case "delay":
        later(b.ms, () => {
          if (!res.destroyed) respond(b.then, recorded, req, res, kill);
        });
        return;
      case "stall":
        res.writeHead(b.status, { "content-type": b.contentType });
        res.write(b.partialBody);
        return;
      case "reset":
        kill();
        if (b.partialBody === undefined) {
          req.socket.destroy();
          return;
        }
        res.writeHead(200, { "content-type": "application/json" });
        res.write(b.partialBody, () => req.socket.destroy());
        return;
      case "redirect":
        res.writeHead(b.status, { location: b.location, "content-type": "text/plain" });
        res.end(`Redirecting to ${b.location}`);
        return;
      case "oversized": {
        const prefix = '{"padding": "';
        const suffix = '"}';
        const fill = Math.max(0, b.bytes - prefix.length - suffix.length);
        res.writeHead(200, {
          "content-type": "application/json",
          ...(b.declareLength ? { "content-length": String(prefix.length + fill + suffix.length) } : {}),
        });
        res.write(prefix);
        let left = fill;
        const pump = () => {
          while (left > 0 && !res.destroyed) {
            const n = Math.min(left, 64 * 1024);
            left -= n;
            if (!res.write("x".repeat(n))) {
              res.once("drain", pump);
              return;
            }
          }
          if (!res.destroyed) res.end(suffix);
        };
        pump();
        return;
      }
      case "sse": {
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
        const pieces = b.splitWrites
          ? b.frames.flatMap((f) => [f.slice(0, f.length >> 1), f.slice(f.length >> 1)])
          : b.frames;
        const next = (i: number) => {
          if (res.destroyed) return;
          if (i < pieces.length) {
            res.write(pieces[i]);
            if (b.intervalMs > 0) later(b.intervalMs, () => next(i + 1));
            else setImmediate(() => next(i + 1));
            return;
          }
          if (b.end === "reset") {
            kill();
            req.socket.destroy();
          } else if (b.end === "close") {
            res.end();
          }
        };
        next(0);
        return;
      }
      case "handler":
        b.handle(recorded, res);
        return;
      case "choose":
        respond(b.pick(recorded, requests.length - 1), recorded, req, res, kill);
        return;
      default: {
        const _never: never = b;
        throw new Error(`unknown behavior ${String(_never)}`);
      }
    }
  }

  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    setBehavior: (b) => {
      behavior = b;
    },
    requests,
    get connectionsSeen() {
      return connectionsSeen;
    },
    get aborted() {
      return aborted;
    },
    whenAborted: (count) => waitFor(() => aborted >= count),
    whenRequested: (count) => waitFor(() => requests.length >= count),
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      server.closeAllConnections();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    },
  };
}
