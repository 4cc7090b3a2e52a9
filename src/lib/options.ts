/**
 * Option checks for component factories, written once so every factory fails the same way at
 * construction, naming itself and the option: `createX: name must be a positive integer, got 0`.
 */

/** `value` when it is a safe integer from 1 to `max`; throws otherwise. */
export function positiveInt(
  owner: string,
  name: string,
  value: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (!Number.isSafeInteger(value) || value < 1 || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? "" : ` up to ${max}`;
    throw new Error(`${owner}: ${name} must be a positive integer${range}, got ${String(value)}`);
  }
  return value;
}

/** `value` when it is a safe integer ≥ 0; throws otherwise. */
export function nonNegativeInt(owner: string, name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Error(`${owner}: ${name} must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}
