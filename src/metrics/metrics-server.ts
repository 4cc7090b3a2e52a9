import * as http from "node:http";
import type { Registry } from "prom-client";
import { listen } from "../lib/listen.js";
import type { Logger } from "../log/index.js";

export interface MetricsServerOptions {
  readonly registry: Registry;
  readonly logger: Logger;
}

export interface MetricsServer {
  /** Starts listening; resolves with the bound port (useful with port 0). Call once. */
  listen(port: number, host?: string): Promise<{ port: number }>;
  /**
   * Stops accepting, lets a scrape in progress finish for up to `graceMs`, then drops what is left.
   * Resolves when every connection is gone; safe to call twice, and before `listen`.
   */
  close(graceMs: number): Promise<void>;
}

/**
 * The Prometheus endpoint on its own port (`API_KEY_SERVER_METRICS_PORT`), so the public port never shows
 * metrics: `GET /metrics` answers the registry in the text format; any other path is 404, another method 405.
 * Plain HTTP/1.1: scrapers (Prometheus, the Managed Service for Prometheus sidecar) speak it.
 */
export function createMetricsServer(options: MetricsServerOptions): MetricsServer {
  const { registry, logger } = options;
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0];
    if (path !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("Not found\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" });
      res.end("Method not allowed\n");
      return;
    }
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { "content-type": registry.contentType });
        res.end(req.method === "HEAD" ? undefined : text);
      },
      (err: unknown) => {
        logger.error({ error: err instanceof Error ? err.message : String(err) }, "Metrics scrape failed");
        res.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end("Metrics scrape failed\n");
      },
    );
  });
  // A scraper keeps its connection open between scrapes (every 15-60 s): keep it longer than that, so
  // each scrape does not open a new one.
  server.keepAliveTimeout = 65_000;

  let closing: Promise<void> | undefined;
  return {
    listen: (port, host) => listen(server, port, host),
    close(graceMs) {
      closing ??= new Promise<void>((resolve) => {
        if (!server.listening) {
          resolve();
          return;
        }
        const timer = setTimeout(() => server.closeAllConnections(), graceMs);
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}
