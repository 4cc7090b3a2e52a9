import { fromRestJson } from "../../src/json/index.js";
import { ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatCompletionRequestSchema, ChatService } from "../../gen/apikeyserver/v1/chat_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { codeNames, e2eProducts } from "../support/e2e-clients.js";
import { behaviors, startMockProvider, type Behavior, type MockProvider } from "../support/mock-provider.js";
import { transportOf, type TransportName } from "../support/transports.js";

// The seed runbook's error table (docs/runbook.ja.md, "よくあるエラーと対処法") and SPEC S7's exact messages,
// each over every protocol a caller can use: the message is the table's text, character for character, and
// a hint or a limit is only ever in the details (ErrorInfo metadata; `error.details` in JSON bodies).

const hello = { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }] };
const bodyLimit = 16_384;

interface Row {
  readonly message: string;
  readonly status: number;
  readonly code: (typeof codeNames)[number];
  readonly reason: string;
  readonly product?: string;
  readonly body?: Record<string, unknown>;
  /** "none": no credentials; "other": a caller granted product-other only; "limited": a fresh caller whose one request a minute is used up. */
  readonly caller?: "none" | "other" | "limited";
  readonly provider?: Behavior;
  /** The ErrorInfo metadata the error must carry (its details), when any. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** The OpenAI surface has no such situation (there `stream: true` is a stream). */
  readonly notOnOpenAi?: boolean;
}

const rows: readonly Row[] = [
  // The seed runbook's table, row by row.
  {
    message: "Upstream service error",
    status: 502,
    code: "UNAVAILABLE",
    reason: "upstream_error",
    provider: behaviors.json(500, { error: { message: "boom" } }),
  },
  {
    message: "Unauthorized",
    status: 401,
    code: "UNAUTHENTICATED",
    reason: "unauthenticated",
    caller: "none",
  },
  {
    message: "Rate limit exceeded",
    status: 429,
    code: "RESOURCE_EXHAUSTED",
    reason: "rate_limited",
    product: "product-limited",
    caller: "limited",
  },
  {
    message: "Product not found",
    status: 404,
    code: "NOT_FOUND",
    reason: "product_not_found",
    product: "product-nope",
  },
  {
    message: "Model not supported",
    status: 400,
    code: "INVALID_ARGUMENT",
    reason: "model_not_supported",
    body: { ...hello, model: "gpt-3.5-turbo" },
    metadata: { param: "model" },
  },
  {
    message: "Streaming not supported",
    status: 400,
    code: "INVALID_ARGUMENT",
    reason: "streaming_not_supported",
    body: { ...hello, stream: true },
    metadata: { param: "stream", hint: "use StreamChatCompletion (REST: POST /v1/chat/product-dev:stream)" },
    notOnOpenAi: true,
  },
  // The rest of SPEC S7's exact messages a caller can meet with a running server.
  { message: "Forbidden", status: 403, code: "PERMISSION_DENIED", reason: "forbidden", caller: "other" },
  {
    message: "Request too large",
    status: 413,
    code: "RESOURCE_EXHAUSTED",
    reason: "request_too_large",
    body: { model: "gpt-4o-mini", messages: [{ role: "user", content: "x".repeat(bodyLimit + 100) }] },
    metadata: { limit_bytes: String(bodyLimit) },
  },
  {
    message: "Upstream timeout",
    status: 504,
    code: "DEADLINE_EXCEEDED",
    reason: "upstream_timeout",
    provider: behaviors.delay(2500, behaviors.json(200, { id: "late" })),
  },
];

type Protocol = "REST" | "OpenAI surface" | TransportName;
const protocols: readonly Protocol[] = [
  "REST",
  "OpenAI surface",
  "Connect JSON, HTTP/1.1",
  "Connect binary, HTTP/1.1",
  "gRPC-Web, HTTP/1.1",
  "gRPC, HTTP/2",
];

/** What a caller sees of an error, whatever the protocol. */
interface Seen {
  readonly status?: number;
  readonly code: string;
  readonly message: string;
  readonly reason: string | undefined;
  readonly metadata: Readonly<Record<string, string>>;
  /** JSON surfaces: the whole body. */
  readonly body?: unknown;
}

describe("the runbook's error messages are exact on every protocol", () => {
  let mock: MockProvider;
  let app: AppHarness;
  let callers = 0;

  beforeAll(async () => {
    mock = await startMockProvider();
    app = await startApp({
      products: {
        ...e2eProducts(mock.url),
        "product-limited": {
          rate_limit: { requests_per_minute: 1 },
          providers: { echo: { models: ["gpt-4o-mini"] } },
        },
      },
      env: {
        API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS: "1",
        API_KEY_SERVER_MAX_BODY_BYTES: String(bodyLimit),
      },
    });
  });
  afterAll(async () => {
    await app.close();
    await mock.close();
  });

  async function authorization(row: Row): Promise<string | undefined> {
    switch (row.caller) {
      case "none":
        return undefined;
      case "other":
        return `Bearer ${await app.token({ claims: { products: ["product-other"] } })}`;
      case "limited": {
        // A caller of its own, whose one request of the minute is spent first (over REST; the limit is
        // per product and caller whatever the protocol).
        const token = await app.token({
          claims: { sub: `limited-${++callers}`, products: ["product-limited"] },
        });
        const first = await fetch(`${app.url}/v1/chat/product-limited`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
          body: JSON.stringify(hello),
        });
        expect(first.status).toBe(200);
        return `Bearer ${token}`;
      }
      default:
        return `Bearer ${await app.token({ claims: { products: ["product-dev"] } })}`;
    }
  }

  async function call(protocol: Protocol, row: Row): Promise<Seen> {
    const product = row.product ?? "product-dev";
    const body = row.body ?? hello;
    const auth = await authorization(row);
    const headers: Record<string, string> = auth === undefined ? {} : { authorization: auth };
    if (protocol === "REST" || protocol === "OpenAI surface") {
      const path = protocol === "REST" ? `/v1/chat/${product}` : `/openai/${product}/v1/chat/completions`;
      const res = await fetch(`${app.url}${path}`, {
        method: "POST",
        headers: { ...headers, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      const json = (await res.json()) as {
        error: {
          status?: string;
          message: string;
          code?: string;
          details?: { reason: string; metadata: Record<string, string> }[];
        };
      };
      const info = json.error.details?.[0];
      return {
        status: res.status,
        code: json.error.status ?? "",
        message: json.error.message,
        // REST bodies name the reason only in `details`; OpenAI's `code` is the reason.
        reason: info?.reason ?? (protocol === "REST" ? undefined : json.error.code),
        metadata: info?.metadata ?? {},
        body: json,
      };
    }
    const client = createClient(ChatService, transportOf(protocol, app.url));
    try {
      await client.createChatCompletion(fromRestJson(ChatCompletionRequestSchema, { ...body, product }), {
        headers,
      });
    } catch (err) {
      const e = ConnectError.from(err);
      const info = e.findDetails(ErrorInfoSchema)[0];
      return {
        code: codeNames[e.code],
        message: e.rawMessage,
        reason: info?.reason,
        metadata: { ...info?.metadata },
      };
    }
    return { code: "OK", message: "", reason: undefined, metadata: {} };
  }

  const cases = rows.flatMap((row) =>
    protocols
      .filter((protocol) => !(protocol === "OpenAI surface" && row.notOnOpenAi === true))
      .map((protocol) => ({ protocol, ...row })),
  );

  it.each(cases)("$protocol: $message ($status $code)", async (row) => {
    mock.setBehavior(row.provider ?? behaviors.json(500, { error: "must not be called" }));
    const seen = await call(row.protocol, row);
    expect(seen.message).toBe(row.message);
    const detailed = row.metadata !== undefined && Object.keys(row.metadata).some((k) => k !== "param");
    if (row.protocol !== "REST" || detailed) expect(seen.reason).toBe(row.reason);
    switch (row.protocol) {
      case "REST":
        expect(seen.status).toBe(row.status);
        expect(seen.code).toBe(row.code);
        // `message` and `detail` both exact; the details hold the hint or limit, and only then appear.
        expect((seen.body as { detail: string }).detail).toBe(row.message);
        expect(seen.metadata).toEqual(
          row.metadata !== undefined && Object.keys(row.metadata).some((k) => k !== "param")
            ? row.metadata
            : {},
        );
        break;
      case "OpenAI surface":
        expect(seen.status).toBe(row.status);
        expect(seen.metadata).toEqual(
          row.metadata !== undefined && Object.keys(row.metadata).some((k) => k !== "param")
            ? row.metadata
            : {},
        );
        break;
      default:
        expect(seen.code).toBe(row.code);
        expect(seen.metadata).toEqual(row.metadata ?? {});
    }
  });
});
