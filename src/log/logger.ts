import { pino, type Logger, type DestinationStream, type LevelWithSilent } from "pino";

export type { Logger } from "pino";

const severities: Readonly<Record<string, string>> = {
  trace: "DEBUG",
  debug: "DEBUG",
  info: "INFO",
  warn: "WARNING",
  error: "ERROR",
  fatal: "CRITICAL",
};

export interface LoggerOptions {
  readonly level: LevelWithSilent;
  /** Where lines go; stdout by default. Tests pass a stream that captures lines. */
  readonly destination?: DestinationStream;
  /** Static fields on every line (service name, version). */
  readonly base?: Record<string, unknown>;
}

/**
 * A pino logger writing one JSON object per line in Cloud Logging's structured format (docs/architecture.md, Access lines):
 * `severity` instead of pino's numeric level, `message` instead of `msg`, ISO `time`.
 */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      messageKey: "message",
      base: options.base ?? null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ severity: severities[label] ?? "DEFAULT" }),
      },
    },
    options.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
