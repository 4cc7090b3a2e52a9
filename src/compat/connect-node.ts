import type * as http from "node:http";
import * as http2 from "node:http2";

// Copies of connect-node 2.3.0's handling of an answer sent before the request body was read
// (universalResponseToNodeResponse), for the Connect codec (src/protocols/connect/connect-codec.ts);
// test/server/connect-unary.test.ts pins them against connect-node byte for byte. Re-check on upgrade.

/** connect-node's limit on the unread request body it reads and drops before answering over HTTP/1.1. */
const maxDrainBytes = 256 * 1024;
/** connect-node's delay between half-closing and closing a connection whose request was left unread. */
const closeDelayMs = 500;

/**
 * HTTP/2, an answer before the whole body was read: as connect-node, the stream is closed with NO_ERROR
 * once the answer is out, so the client stops sending (src/transport/one-port.ts lets the answer reach the
 * client first).
 */
export function stopUploadAfterAnswer(stream: http2.ServerHttp2Stream): void {
  stream.once("wantTrailers", () => {
    setImmediate(() => {
      if (stream.state.remoteClose === 0) stream.close(http2.constants.NGHTTP2_NO_ERROR);
    });
  });
}

/**
 * HTTP/1.1, an answer before the whole body was read: as connect-node, up to 256 KiB more are read and
 * dropped so the connection stays usable; a body still unfinished closes the connection after the
 * answer (half-close first, so the client's TCP stack does not drop the answer).
 */
export async function settleUnreadBody(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  headers: Record<string, string | string[]>,
): Promise<void> {
  const connection = headers["connection"];
  if (!res.shouldKeepAlive || (typeof connection === "string" && connection.toLowerCase() === "close")) {
    return;
  }
  let drained = 0;
  let failed = false;
  try {
    for await (const chunk of req.iterator({ destroyOnReturn: false })) {
      drained += (chunk as Buffer).byteLength;
      if (drained > maxDrainBytes) break;
    }
  } catch {
    failed = true;
  }
  const socket = res.socket;
  if (req.complete || socket === null) return;
  headers["connection"] = "close";
  if (failed) return;
  socket.destroySoon = () => {
    socket.end(() => setTimeout(() => socket.destroy(), closeDelayMs).unref());
  };
}
