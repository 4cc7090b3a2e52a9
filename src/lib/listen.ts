import type { Server } from "node:net";

/**
 * Starts `server` listening and resolves with the bound port (the one chosen with port 0); rejects with the
 * listen error (EADDRINUSE, EACCES) instead of leaving it to an "error" event nobody handles.
 */
export function listen(server: Server, port: number, host?: string): Promise<{ port: number }> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const address = server.address();
      if (address === null || typeof address === "string") {
        reject(new Error("listen: unexpected address"));
        return;
      }
      resolve({ port: address.port });
    });
  });
}
