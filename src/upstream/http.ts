import type { Dispatcher } from "undici";
import { AppError } from "../errors/index.js";
import type { ProviderConfig } from "../secrets/types.js";
import { UpstreamFailure, fromProviderStatus } from "./failure.js";
import { SseEventTooLargeError, parseSse, type SseEvent } from "./sse.js";
import type { Clock, JsonObject } from "./types.js";

/** One POST of a JSON body to a provider. */
export interface HttpPost {
  readonly provider: ProviderConfig;
  /** The provider's origin ("https://api.openai.com") and the path to post to. */
  readonly origin: string;
  readonly path: string;
  /** Provider headers (auth, version); content-type and accept are added here. */
  readonly headers: Readonly<Record<string, string>>;
  /** A JSON object (serialised here), or bytes sent as they are (the Anthropic surface's passthrough). */
  readonly body: JsonObject | Uint8Array;
  readonly signal: AbortSignal;
}

/** The HTTP side every network adapter shares: one pool, one size cap, one error mapping. */
export interface UpstreamHttp {
  /** POSTs and returns the 2xx JSON object; any other outcome is an AppError (or the signal's reason). */
  postJson(post: HttpPost): Promise<{ readonly status: number; readonly body: JsonObject }>;
  /** POSTs and yields the server-sent events of a 2xx `text/event-stream` answer. */
  postEventStream(post: HttpPost): AsyncIterable<SseEvent>;
}

export interface UpstreamHttpOptions {
  readonly dispatcher: Dispatcher;
  readonly maxResponseBytes: number;
  readonly clock: Clock;
}

type BodyReadable = Dispatcher.ResponseData["body"];

/**
 * Builds the shared HTTP helper. Redirects are never followed (a 3xx is a provider error); bodies are read
 * with a byte cap; when `post.signal` aborts, the request is torn down and the signal's reason is thrown, so
 * the caller of this module decides what an abort means.
 */
export function createUpstreamHttp(options: UpstreamHttpOptions): UpstreamHttp {
  const { dispatcher, maxResponseBytes, clock } = options;

  async function send(post: HttpPost, accept: string): Promise<Dispatcher.ResponseData> {
    try {
      return await dispatcher.request({
        origin: post.origin,
        path: post.path,
        method: "POST",
        headers: { ...post.headers, "content-type": "application/json", accept },
        body: post.body instanceof Uint8Array ? post.body : JSON.stringify(post.body),
        signal: post.signal,
      });
    } catch (err) {
      throw fromTransportError(post, err);
    }
  }

  /** Reads the whole body, destroying the response as soon as it passes the cap. */
  function readCapped(post: HttpPost, body: BodyReadable, contentLength: unknown): Promise<string> {
    if (Number(contentLength) > maxResponseBytes) {
      body.destroy();
      return Promise.reject(tooLarge(post));
    }
    // Plain events rather than `for await`: no iterator and no promise per chunk on every call.
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let settled = false;
      body.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxResponseBytes) {
          settled = true;
          reject(tooLarge(post));
          body.destroy();
          return;
        }
        chunks.push(chunk);
      });
      body.once("end", () => {
        settled = true;
        const only = chunks.length === 1 ? chunks[0] : undefined;
        resolve((only ?? Buffer.concat(chunks, size)).toString("utf8"));
      });
      body.once("error", (err) => {
        settled = true;
        reject(fromTransportError(post, err));
      });
      // A body torn down without an error (nor an end) must not leave the call waiting forever. "close"
      // also follows every "end": the error is built only when nothing settled the read.
      body.once("close", () => {
        if (!settled) reject(fromTransportError(post, new Error("response body closed early")));
      });
    });
  }

  function tooLarge(post: HttpPost): AppError {
    return new AppError("upstream_error", {
      cause: new UpstreamFailure(post.provider, `response larger than ${maxResponseBytes} bytes`),
    });
  }

  async function failOnStatus(post: HttpPost, res: Dispatcher.ResponseData): Promise<void> {
    if (res.statusCode >= 200 && res.statusCode < 300) return;
    const text = await readCapped(post, res.body, res.headers["content-length"]);
    throw fromProviderStatus(post.provider, res.statusCode, res.headers, text, clock.now());
  }

  return {
    async postJson(post) {
      const res = await send(post, "application/json");
      await failOnStatus(post, res);
      const text = await readCapped(post, res.body, res.headers["content-length"]);
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw badBody(post, res, "invalid JSON", text);
      }
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
        throw badBody(post, res, "JSON that is not an object", text);
      }
      return { status: res.statusCode, body: parsed as JsonObject };
    },

    async *postEventStream(post) {
      const res = await send(post, "text/event-stream");
      try {
        await failOnStatus(post, res);
        const type = String(res.headers["content-type"] ?? "");
        if (!type.toLowerCase().startsWith("text/event-stream")) {
          const text = await readCapped(post, res.body, res.headers["content-length"]);
          throw new AppError("upstream_error", {
            cause: new UpstreamFailure(
              post.provider,
              `expected an event stream, got ${type}: ${text}`,
              res.statusCode,
            ),
          });
        }
        try {
          yield* parseSse(res.body, maxResponseBytes);
        } catch (err) {
          if (err instanceof SseEventTooLargeError) throw tooLarge(post);
          throw fromTransportError(post, err);
        }
      } finally {
        // Also runs when the consumer stops early: release the socket instead of draining the stream.
        if (!res.body.destroyed) res.body.destroy();
      }
    },
  };
}

function badBody(post: HttpPost, res: Dispatcher.ResponseData, what: string, text: string): AppError {
  const type = String(res.headers["content-type"] ?? "no content-type");
  return new AppError("upstream_error", {
    // The whole text goes in: UpstreamFailure scrubs before it shortens, so no key is cut into an unscrubbable piece.
    cause: new UpstreamFailure(post.provider, `answered ${what} (${type}): ${text}`, res.statusCode),
  });
}

/** Timeout error codes of undici's own headers/body timers, which mean the same as our timeout. */
const undiciTimeouts: ReadonlySet<string> = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"]);

/**
 * A failure below HTTP (refused, reset, parser error, undici timers). An aborted signal wins: its reason is
 * thrown as is, so the forwarder can tell its own timeout from the caller going away.
 */
function fromTransportError(post: HttpPost, err: unknown): Error {
  if (post.signal.aborted) {
    const reason: unknown = post.signal.reason;
    return reason instanceof Error ? reason : new Error("aborted", { cause: reason });
  }
  if (err instanceof AppError) return err;
  const code = typeof err === "object" && err !== null && "code" in err ? String(err.code) : "unknown";
  const message = err instanceof Error ? err.message : String(err);
  const timeout = undiciTimeouts.has(code);
  const cause = new UpstreamFailure(
    post.provider,
    `transport error ${code}: ${message}`,
    undefined,
    !timeout,
  );
  return new AppError(timeout ? "upstream_timeout" : "upstream_error", { cause });
}
