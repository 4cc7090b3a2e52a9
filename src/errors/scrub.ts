/**
 * Removes anything that looks like a credential from a text that may reach a caller or a log: the exact
 * secrets given (provider keys of the product, ...) and common key shapes (OpenAI/Anthropic `sk-...`,
 * Google `AIza...`, bearer tokens, JWTs), which a provider's error message may quote.
 */
const patterns: readonly RegExp[] = [
  /\bsk-[A-Za-z0-9_*.-]{4,}/g,
  /\bAIza[0-9A-Za-z_-]{10,}/g,
  /\bBearer\s+[A-Za-z0-9._~+/=-]+/gi,
  /\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g,
];

export function scrubSecrets(text: string, secrets: Iterable<string> = []): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length >= 4) out = out.split(secret).join("[REDACTED]");
  }
  for (const re of patterns) out = out.replace(re, "[REDACTED]");
  return out;
}
