// How the benchmark's own helper servers (the mock provider and the raw forwarder) listen: on a free
// loopback port reported to run.ts over IPC, with timeouts that never close a pooled keep-alive
// connection between rounds, and gone when the harness goes.
import process from "node:process";

/** Configures and starts `server` (a node:http Server) as a forked benchmark helper. */
export function serveForBench(server) {
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 130_000;
  server.requestTimeout = 0;
  server.maxRequestsPerSocket = 0;
  server.listen(0, "127.0.0.1", () => {
    const address = server.address();
    process.send?.({ ready: true, port: typeof address === "object" && address !== null ? address.port : 0 });
  });
  process.on("disconnect", () => process.exit(0));
  process.on("SIGTERM", () => process.exit(0));
}
