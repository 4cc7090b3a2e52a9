/**
 * Why authentication failed, as a stable code for the log line (docs/auth.md: the reason goes to the log, never
 * to the response). Values are part of the log contract; operators filter on them.
 */
export const authFailureReasons = [
  // credentials on the request
  "missing_credentials",
  "ambiguous_credentials",
  "unsupported_scheme",
  // JWT
  "jwt_disabled",
  "token_too_large",
  "malformed_token",
  "alg_not_allowed",
  "bad_kid",
  "crit_header",
  "unknown_kid",
  "ambiguous_kid",
  "bad_signature",
  "expired",
  "not_yet_valid",
  "missing_claim",
  "invalid_claim",
  "token_too_old",
  "iat_in_future",
  "wrong_issuer",
  "wrong_audience",
  "bad_products_claim",
  // HMAC
  "hmac_disabled",
  "malformed_hmac_headers",
  "missing_nonce",
  "unknown_key_id",
  "timestamp_too_old",
  "timestamp_in_future",
  "bad_query",
  "unsupported_stream",
  "replayed_nonce",
] as const;

export type AuthFailureReason = (typeof authFailureReasons)[number];

/**
 * An authentication failure inside the auth folder. Its message is the reason code; `detail` holds safe
 * context for the log (a kid, a key id, a claim name), never a token, secret or signature.
 */
export class AuthFailure extends Error {
  override readonly name = "AuthFailure";
  readonly reason: AuthFailureReason;
  readonly detail: Readonly<Record<string, string>>;

  constructor(reason: AuthFailureReason, detail: Readonly<Record<string, string>> = {}) {
    super(reason);
    this.reason = reason;
    this.detail = detail;
  }
}
