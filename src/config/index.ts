export {
  loadConfig,
  unknownSettings,
  closestSetting,
  ConfigError,
  logLevels,
  maxBodyBytesLimit,
  type Config,
  type LogLevel,
  type SecretNames,
  type SecretManagerEndpoint,
  type SecretSourceConfig,
} from "./config.js";
