export {
  loadConfig,
  unknownSettings,
  ConfigError,
  logLevels,
  maxBodyBytesLimit,
  type Config,
  type LogLevel,
  type SecretNames,
  type SecretManagerEndpoint,
  type SecretSourceConfig,
} from "./config.js";
