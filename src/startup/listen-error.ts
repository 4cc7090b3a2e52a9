/**
 * The one-line explanation of a failed `listen()` on `host:port`, with what to do about it, or undefined when
 * the error is not one an operator can fix by configuration (then the caller rethrows it). `variable` is the
 * setting that chose the port, named in the advice.
 */
export function listenProblem(
  err: unknown,
  host: string,
  port: number,
  variable: "PORT" | "API_KEY_SERVER_METRICS_PORT" = "PORT",
): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  const where = `${host}:${port}`;
  switch (code) {
    case "EADDRINUSE":
      return `cannot listen on ${where}: the port is already in use (is another server running? stop it, or set ${variable} to a free port)`;
    case "EACCES":
      return `cannot listen on ${where}: permission denied (ports below 1024 need privileges; set ${variable} to 1024 or above)`;
    case "EADDRNOTAVAIL":
      return `cannot listen on ${where}: no such local address (set API_KEY_SERVER_HOST to an address of this machine, or 0.0.0.0)`;
    default:
      return undefined;
  }
}
