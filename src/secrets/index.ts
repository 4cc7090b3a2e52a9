export type {
  HmacKey,
  ProductConfig,
  ProductRateLimit,
  ProviderConfig,
  ProviderKind,
  Secrets,
  SecretStore,
} from "./types.js";
export { providerKinds } from "./types.js";
export {
  SecretSourceError,
  type SecretSource,
  type SecretVersion,
  type SecretWatch,
  type SecretWatchHandlers,
} from "./source.js";
export {
  createFileSecretSource,
  type FileSecretSource,
  type FileSecretSourceOptions,
} from "./file-source.js";
export {
  createSecretManagerSource,
  type SecretManagerClient,
  type SecretManagerSourceOptions,
} from "./secret-manager-source.js";
export {
  createSecretStore,
  logSecretLoadFailure,
  SecretLoadError,
  type RefreshingSecretStore,
  type SecretNames,
  type SecretReadReport,
  type SecretStoreOptions,
} from "./secret-store.js";
export { SecretFormatError } from "./format-error.js";
export { parseProducts } from "./parse-products.js";
export { parseJwtKeys, jwtAlgorithms, type JwtAlgorithm } from "./parse-jwt-keys.js";
export { parseHmacSecrets, minHmacSecretLength } from "./parse-hmac-secrets.js";
