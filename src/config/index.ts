export {
  loadConfig,
  unknownSettings,
  ConfigError,
  logLevels,
  type Config,
  type LogLevel,
  type SecretNames,
  type SecretManagerEndpoint,
  type SecretSourceConfig,
} from "./config.js";
