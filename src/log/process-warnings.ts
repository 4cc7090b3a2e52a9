import type { Logger } from "pino";

/**
 * Turns the process warnings Node prints as plain text on stderr (`(node:1) MetadataLookupWarning: ...`
 * from the Google auth library when there are no credentials, deprecations of dependencies) into WARNING
 * lines of the structured log, so every line the process prints is JSON. Node's own printer is a
 * `warning` listener installed at start unless warnings are off (`--no-warnings`, `NODE_NO_WARNINGS=1`);
 * it is replaced, not joined. With warnings off nothing is printed, and nothing is logged either.
 */
export function logProcessWarnings(logger: Logger, target: NodeJS.Process = process): void {
  if (target.listenerCount("warning") === 0) return;
  target.removeAllListeners("warning");
  target.on("warning", (warning: Error & { code?: unknown }) => {
    logger.warn(
      { warning: warning.name, ...(typeof warning.code === "string" ? { code: warning.code } : {}) },
      `${warning.name}: ${warning.message}`,
    );
  });
}
