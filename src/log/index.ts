export { createLogger, type Logger, type LoggerOptions } from "./logger.js";
export { logProcessWarnings } from "./process-warnings.js";
