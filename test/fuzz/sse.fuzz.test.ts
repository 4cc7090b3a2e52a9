import { Readable } from "node:stream";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SseEventTooLargeError, parseSse, type SseEvent } from "../../src/upstream/sse.js";
import { fuzzOptions } from "./fuzz-options.js";

/**
 * The SSE parser (src/upstream/sse.ts) under random splits and garbage (issue 18, fuzzing): the events do
 * not depend on where the network cut the bytes (even inside a UTF-8 sequence or a CRLF), and garbage
 * ends in events or in the one documented error (an oversized event), never in anything else.
 */

const runs = 300;
const encoder = new TextEncoder();

async function collect(chunks: readonly Uint8Array[], maxEventBytes = 64 * 1024): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  for await (const event of parseSse(Readable.from(chunks, { objectMode: true }), maxEventBytes))
    events.push(event);
  return events;
}

/** `bytes` cut at the given positions (sorted, deduplicated, inside the range). */
function split(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const at of [...points, bytes.length]) {
    out.push(bytes.subarray(from, at));
    from = at;
  }
  return out;
}

const lineEnd = fc.constantFrom("\n", "\r\n", "\r");
const field = fc.oneof(
  fc.string().map((s) => `data: ${s.replace(/[\r\n]/g, "")}`),
  fc.string().map((s) => `data:${s.replace(/[\r\n]/g, "")}`),
  fc.constantFrom(
    "event: error",
    "event:message",
    ": keep-alive",
    "id: 7",
    "retry: 10",
    "data",
    "data: [DONE]",
  ),
  fc.string({ unit: "grapheme" }).map((s) => `data: ${s.replace(/[\r\n]/g, "")}`),
);
/** A well-formed stream: events of 1-3 fields, each ended by a blank line, with mixed line ends. */
const stream = fc
  .array(fc.tuple(fc.array(fc.tuple(field, lineEnd), { minLength: 1, maxLength: 3 }), lineEnd), {
    maxLength: 8,
  })
  .map((events) => events.map(([fields, end]) => fields.map(([f, e]) => f + e).join("") + end).join(""));

describe("SSE parser under fuzzing", () => {
  it("yields the same events however the bytes are split", async () => {
    await fc.assert(
      fc.asyncProperty(stream, fc.array(fc.nat(), { maxLength: 12 }), async (text, cuts) => {
        const bytes = encoder.encode(text);
        const whole = await collect([bytes]);
        const pieces = await collect(split(bytes, cuts));
        const bytewise = await collect(split(bytes, Array.from(bytes.keys())));
        expect(pieces).toEqual(whole);
        expect(bytewise).toEqual(whole);
      }),
      fuzzOptions(runs),
    );
  });

  it("ends garbage in events or the documented oversized-event error, nothing else", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }),
        fc.integer({ min: 1, max: 512 }),
        async (chunks, maxEventBytes) => {
          try {
            const events = await collect(chunks, maxEventBytes);
            for (const e of events) expect(typeof e.data).toBe("string");
          } catch (err) {
            expect(err).toBeInstanceOf(SseEventTooLargeError);
          }
        },
      ),
      fuzzOptions(runs),
    );
  });
});
