import { createLogger, type Logger } from "../../src/log/index.js";

/** A real logger whose lines are kept in memory, for assertions on what was logged (and what never is). */
export interface CapturedLog {
  readonly logger: Logger;
  /** Raw JSON lines as written. */
  readonly lines: string[];
  /** Parsed lines. */
  records(): Record<string, unknown>[];
  /** All lines joined, for "never contains" assertions. */
  text(): string;
}

export function captureLog(level: "debug" | "info" | "trace" = "debug"): CapturedLog {
  const lines: string[] = [];
  const logger = createLogger({ level, destination: { write: (line: string) => void lines.push(line) } });
  return {
    logger,
    lines,
    records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    text: () => lines.join(""),
  };
}
