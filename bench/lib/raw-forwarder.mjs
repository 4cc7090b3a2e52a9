// The floor: the least a Node HTTP hop can cost. It pipes each request, unparsed, to the mock
// provider over a keep-alive agent and pipes the answer back: no auth, no JSON, no logging. A proxy
// that does real work cannot beat it, so the proxy's numbers are reported as a ratio to these.
// Runs in its own process (forked by run.ts); argv[2] is the mock's port.
import http from "node:http";
import { serveForBench } from "./serve.mjs";
import process from "node:process";

const upstreamPort = Number(process.argv[2]);
if (!Number.isInteger(upstreamPort) || upstreamPort <= 0) {
  process.stderr.write("raw-forwarder: usage: raw-forwarder.mjs <upstream port>\n");
  process.exit(2);
}

// Same pooling stance as a production proxy: unbounded keep-alive sockets to the one upstream.
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 });

// Hop-by-hop headers (RFC 9110 7.6.1) must not be forwarded.
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
]);

function forwardable(headers) {
  const out = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!HOP_BY_HOP.has(name) && value !== undefined) out[name] = value;
  }
  return out;
}

const server = http.createServer((req, res) => {
  const upstream = http.request(
    {
      host: "127.0.0.1",
      port: upstreamPort,
      method: req.method,
      path: req.url,
      headers: forwardable(req.headers),
      agent,
    },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, forwardable(answer.headers));
      answer.pipe(res);
    },
  );
  upstream.on("error", () => {
    if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
    res.end("upstream error");
  });
  res.on("close", () => {
    if (!res.writableFinished) upstream.destroy();
  });
  req.pipe(upstream);
});
serveForBench(server);
