import type { EventEmitter } from "node:events";
import { once } from "node:events";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Compression } from "@connectrpc/connect/protocol";
import type { Message } from "@bufbuild/protobuf";
import type { InProcessCall } from "../call/in-process-call.js";
import type { MethodSpec } from "../call/pipeline.js";
import { readBody } from "../call/read-body.js";
import type { Exchange } from "../edge/exchange.js";
import { nodeHeaders } from "../compat/node-headers.js";
import { requestTooLarge } from "../errors/index.js";

// The envelope framing the gRPC, gRPC-Web and Connect streaming codecs share (flags byte, big-endian
// length, data), with connect-es 2.3.0's limits and error texts (@connectrpc/connect/protocol).

/** The envelope flag of a compressed message. */
export const compressedFlag = 0b0000_0001;

/**
 * A message decompressed, at most `readMaxBytes` long: a larger one is the server's `Request too large`
 * (classified here, where it arises); no compression to use is connect's INTERNAL refusal, word for word.
 */
export async function decompress(
  compression: Compression | null,
  data: Uint8Array,
  readMaxBytes: number,
): Promise<Uint8Array> {
  if (compression === null) {
    throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
  }
  try {
    return await compression.decompress(data, readMaxBytes);
  } catch (err) {
    if (err instanceof ConnectError && err.code === Code.ResourceExhausted) {
      throw requestTooLarge(readMaxBytes, err);
    }
    throw err;
  }
}

/** One envelope, its data compressed when at least `compressMinBytes` long and a compression is given. */
export async function envelope(
  data: Uint8Array,
  compression: Compression | null,
  compressMinBytes: number,
  flags = 0,
): Promise<Uint8Array> {
  let out = data;
  let f = flags;
  if (compression !== null && data.byteLength >= compressMinBytes) {
    out = await compression.compress(data);
    f |= compressedFlag;
  }
  const buf = Buffer.allocUnsafe(5 + out.byteLength);
  buf[0] = f;
  buf.writeUInt32BE(out.byteLength, 1);
  buf.set(out, 5);
  return buf;
}

/** Writes one chunk, waiting for the socket to drain; false when the client has gone. */
export async function send(exchange: Exchange, chunk: Uint8Array, signal: AbortSignal): Promise<boolean> {
  const { res } = exchange;
  if (signal.aborted || res.destroyed) return false;
  if (res.write(chunk)) return true;
  try {
    await once(res as unknown as EventEmitter, "drain", { signal });
    return true;
  } catch {
    return false;
  }
}

/**
 * A server stream of an enveloped protocol, whole: an error before the first message goes to `refuse`
 * (connect's handlers wait for the first message before they send headers); otherwise the headers, the
 * messages (sendMessages), and `end` with the error that ended the stream, if any. Nothing more is written
 * once the client has left.
 */
export async function writeStream(
  exchange: Exchange,
  call: InProcessCall,
  messages: AsyncIterator<unknown>,
  serialize: (message: Message) => Uint8Array,
  compression: Compression | null,
  compressMinBytes: number,
  refuse: (err: ConnectError) => Promise<void>,
  end: (err: ConnectError | undefined) => Promise<void>,
): Promise<void> {
  let first: IteratorResult<unknown>;
  try {
    first = await messages.next();
  } catch (err) {
    // Already the wire error, recorded on the exchange by the one converter.
    await refuse(err as ConnectError);
    return;
  }
  exchange.res.writeHead(200, nodeHeaders(call.context.responseHeader));
  const failure = await sendMessages(
    exchange,
    call,
    first,
    messages,
    serialize,
    compression,
    compressMinBytes,
  );
  if (failure !== "gone") await end(failure);
}

/**
 * Writes the messages of a server stream, from `first` on, as envelopes (compressed when worth it),
 * waiting for the socket to drain. Resolves with the wire error that ended the stream (undefined when it
 * finished) or `"gone"` when the client left; the stream is returned when it did not finish.
 */
export async function sendMessages(
  exchange: Exchange,
  call: InProcessCall,
  first: IteratorResult<unknown>,
  messages: AsyncIterator<unknown>,
  serialize: (message: Message) => Uint8Array,
  compression: Compression | null,
  compressMinBytes: number,
): Promise<ConnectError | undefined | "gone"> {
  let next = first;
  try {
    while (next.done !== true) {
      let body: Uint8Array;
      try {
        body = await envelope(serialize(next.value as Message), compression, compressMinBytes);
      } catch (thrown) {
        return call.fail(thrown);
      }
      if (!(await send(exchange, body, call.context.signal))) return "gone";
      try {
        next = await messages.next();
      } catch (err) {
        // Already the wire error, recorded on the exchange by the one converter.
        return err as ConnectError;
      }
    }
    return undefined;
  } finally {
    if (next.done !== true) await messages.return?.();
  }
}

/**
 * Reads the body of a call with one request message: exactly one envelope, not flagged `endFlag`. The errors are connect's, word
 * for word, so a caller sees the same whichever lane served it.
 */
export async function readSingleEnvelope(
  exchange: Exchange,
  readMaxBytes: number,
  kind: MethodSpec["kind"],
  endFlag?: number,
): Promise<{ flags: number; data: Uint8Array }> {
  const method = kind === "unary" ? "unary" : "server-streaming";
  const missing = () =>
    new ConnectError(`protocol error: missing input message for ${method} method`, Code.Unimplemented);
  const extra = () =>
    new ConnectError(`protocol error: received extra input message for ${method} method`, Code.Unimplemented);
  let declared = -1;
  const all = await readBody(
    exchange.req,
    (chunk, total, chunks) => {
      if (declared < 0 && total >= 5) {
        const head = chunks.length === 1 ? chunk : Buffer.concat(chunks, total);
        declared = head.readUInt32BE(1);
        if (declared > readMaxBytes) return requestTooLarge(readMaxBytes);
      }
      // More bytes than one message and the header of a second one: connect reads no further either.
      if (declared >= 0 && total > 5 + declared + readMaxBytes + 5) return extra();
      return undefined;
    },
    () => new ConnectError("the request body ended early", Code.Canceled),
  );
  const total = all.length;
  if (total === 0) throw missing();
  if (total < 5 || total < 5 + declared) {
    throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  }
  const end = 5 + declared;
  if (total > end) {
    const rest = all.subarray(end);
    const complete = rest.length >= 5 && rest.length >= 5 + rest.readUInt32BE(1);
    throw complete ? extra() : new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  }
  const flags = all[0] as number;
  // An envelope with the protocol's end flag (gRPC-Web trailers, a Connect end of stream) is skipped by
  // connect: no message.
  if (endFlag !== undefined && (flags & endFlag) === endFlag) throw missing();
  return { flags, data: all.subarray(5, end) };
}
