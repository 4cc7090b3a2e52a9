/** One Server-Sent Event (only the fields providers use). */
export interface SseEvent {
  /** The `event:` field, when given. */
  readonly event: string | undefined;
  /** The `data:` lines joined with "\n". */
  readonly data: string;
}

/** Thrown when a single event grows beyond the allowed size (a provider that never ends its event). */
export class SseEventTooLargeError extends Error {
  override readonly name = "SseEventTooLargeError";
}

/**
 * Parses an SSE byte stream (WHATWG rules: `\n`, `\r\n` or `\r` line ends, blank line dispatches, `:` comments,
 * one optional space after the colon). Yields events as they complete; an event still open when the bytes end
 * is dropped, so a truncated stream shows up as a missing end marker, never as half an event.
 */
export async function* parseSse(
  chunks: AsyncIterable<Uint8Array>,
  maxEventBytes: number,
): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder("utf-8");
  let buffer = "";
  let data: string[] = [];
  let dataChars = 0;
  let event: string | undefined;
  // Counted in UTF-16 units of decoded text: close enough to bytes for a guard against runaway events.
  const tooLarge = () => new SseEventTooLargeError(`an event exceeded ${maxEventBytes} bytes`);

  function* takeLines(): Generator<SseEvent> {
    for (;;) {
      const end = buffer.search(/\r\n|\r|\n/);
      // A lone "\r" at the end may be the first half of "\r\n": wait for more bytes.
      if (end === -1 || (buffer[end] === "\r" && end === buffer.length - 1)) return;
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + (buffer.startsWith("\r\n", end) ? 2 : 1));
      if (line === "") {
        if (data.length > 0) yield { event, data: data.join("\n") };
        data = [];
        dataChars = 0;
        event = undefined;
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") {
        data.push(value);
        dataChars += value.length;
        if (dataChars > maxEventBytes) throw tooLarge();
      } else if (field === "event") {
        event = value;
      }
    }
  }

  for await (const chunk of chunks) {
    buffer += decoder.decode(chunk, { stream: true });
    yield* takeLines();
    if (buffer.length + dataChars > maxEventBytes) throw tooLarge();
  }
  buffer += decoder.decode();
  yield* takeLines();
}
