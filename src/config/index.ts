export {
  loadConfig,
  unknownSettings,
  ConfigError,
  logLevels,
  type Config,
  type LogLevel,
  type SecretNames,
  type SecretSourceConfig,
} from "./config.js";
