export {
  principalKey,
  canUseProduct,
  assertCanUseProduct,
  type Principal,
  type ProductGrant,
} from "./principal.js";
export {
  createAuth,
  createAuthInterceptor,
  defaultPublicServices,
  type Auth,
  type AuthInterceptorOptions,
  type AuthMethodTried,
  type CredentialHeaders,
  type PrecheckRequest,
} from "./interceptor.js";
export { repeatedCredentialHeader } from "./credential-headers.js";
export { createMemoryNonceStore, type MemoryNonceStoreOptions } from "./memory-nonce-store.js";
export {
  signRequest,
  signGrpcRequest,
  stringToSign,
  canonicalQuery,
  sha256Hex,
  hmacHeaders,
  hmacSchemeTag,
  type SignRequestOptions,
  type SignGrpcRequestOptions,
  type SignedParts,
} from "./hmac-signing.js";
export { allowedJwtAlgorithms, maxJwtLength } from "./jwt-verifier.js";
export { authFailureReasons, type AuthFailureReason } from "./auth-failure.js";
