import type { ServerResponse } from "node:http";
import { behaviors, type Behavior, type RecordedRequest } from "./mock-provider.js";

// The mock provider's embeddings wire formats (used with `mock.setBehavior(embeddingsBehavior())`):
// OpenAI's and Azure OpenAI's `POST …/embeddings` (float or base64 answers, `usage`), and the Gemini API's
// `POST …/models/{model}:batchEmbedContents` (no usage). Vectors are `mockVector(i, dims)` for the i-th input.

/** The mock's vector of the i-th input: float32 values, so base64 and float answers decode the same. */
export function mockVector(i: number, dimensions = 4): number[] {
  return Array.from({ length: dimensions }, (_, k) => Math.fround((i + 1) / (k + 3)));
}

/** Little-endian float32, base64 (OpenAI's `encoding_format: "base64"`). */
export function base64Of(values: readonly number[]): string {
  const bytes = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => bytes.writeFloatLE(v, i * 4));
  return bytes.toString("base64");
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

/**
 * Answers embeddings requests in the wire format of the path (vectors of the request's `dimensions`, else
 * `defaultDimensions`); anything else is a 404.
 */
export function embeddingsBehavior(defaultDimensions = 4): Behavior {
  return behaviors.handler((req: RecordedRequest, res) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    if (req.path.includes(":batchEmbedContents")) {
      const requests = (body["requests"] ?? []) as { outputDimensionality?: number }[];
      send(res, 200, {
        embeddings: requests.map((r, i) => ({
          values: mockVector(i, r.outputDimensionality ?? defaultDimensions),
        })),
      });
      return;
    }
    if (/\/embeddings(\?|$)/.test(req.path)) {
      const input = body["input"];
      const count =
        typeof input === "string" || (Array.isArray(input) && typeof input[0] === "number")
          ? 1
          : Array.isArray(input)
            ? input.length
            : 0;
      const dims = typeof body["dimensions"] === "number" ? body["dimensions"] : defaultDimensions;
      const base64 = body["encoding_format"] === "base64";
      send(res, 200, {
        object: "list",
        data: Array.from({ length: count }, (_, i) => ({
          object: "embedding",
          index: i,
          embedding: base64 ? base64Of(mockVector(i, dims)) : mockVector(i, dims),
        })),
        model: typeof body["model"] === "string" ? body["model"] : "azure-deployment-model",
        usage: { prompt_tokens: 5 * count, total_tokens: 5 * count },
      });
      return;
    }
    send(res, 404, { error: { message: `mock: no route ${req.path}`, type: "invalid_request_error" } });
  });
}
