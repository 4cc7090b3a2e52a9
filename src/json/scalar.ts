import { ScalarType, type JsonValue } from "@bufbuild/protobuf";
import type { EnumRule, ValueRule } from "./plan.js";

// One scalar or enum value of REST JSON: whether protobuf's JSON reader takes it, the value the REST
// writer gives it back, and the value a message holds. The rules are protobuf's JSON mapping as
// @bufbuild/protobuf reads it (test/json/ compares them with it): numbers may come as strings, 64-bit
// integers as anything BigInt() reads, doubles also as "NaN", "Infinity" and "-Infinity".

const int32Min = -0x80000000;
const int32Max = 0x7fffffff;
const uint32Max = 0xffffffff;
const int64Min = -(2n ** 63n);
const int64Max = 2n ** 63n - 1n;
const uint64Max = 2n ** 64n - 1n;

/** A number given as a JSON string, as protobuf's reader parses one; undefined when it is none. */
function numberOf(value: string): number | undefined {
  if (value === "" || value.trim().length !== value.length) return undefined;
  return Number(value);
}

/** A double or float: a number, a numeric string, or one of the special strings. */
function floatOf(value: JsonValue): number | undefined {
  if (typeof value === "number") return value;
  if (typeof value !== "string") return undefined;
  switch (value) {
    case "NaN":
      return NaN;
    case "Infinity":
      return Infinity;
    case "-Infinity":
      return -Infinity;
    default: {
      const n = numberOf(value);
      return n !== undefined && Number.isFinite(n) ? n : undefined;
    }
  }
}

function int32Of(value: JsonValue, min: number, max: number): number | undefined {
  const n = typeof value === "number" ? value : typeof value === "string" ? numberOf(value) : undefined;
  return n !== undefined && Number.isInteger(n) && n >= min && n <= max ? n : undefined;
}

function int64Of(value: JsonValue, unsigned: boolean): bigint | undefined {
  if (typeof value !== "number" && (typeof value !== "string" || value.length === 0)) return undefined;
  let n: bigint;
  try {
    n = BigInt(value);
  } catch {
    return undefined;
  }
  return n >= (unsigned ? 0n : int64Min) && n <= (unsigned ? uint64Max : int64Max) ? n : undefined;
}

/**
 * The value of a scalar as a message holds it (a number, a bigint, a string, a boolean), or undefined
 * when protobuf's reader refuses it. `null` is never a value here.
 */
export function scalarOf(
  scalar: ScalarType,
  value: JsonValue,
): number | bigint | string | boolean | undefined {
  switch (scalar) {
    case ScalarType.STRING:
      return typeof value === "string" && value.isWellFormed() ? value : undefined;
    case ScalarType.BOOL:
      return typeof value === "boolean" ? value : undefined;
    case ScalarType.DOUBLE:
      return floatOf(value);
    case ScalarType.FLOAT: {
      const n = floatOf(value);
      return n !== undefined && Number.isFinite(n) && !Number.isFinite(Math.fround(n)) ? undefined : n;
    }
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return int32Of(value, int32Min, int32Max);
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return int32Of(value, 0, uint32Max);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return int64Of(value, false);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return int64Of(value, true);
    default:
      // Bytes: refused when the plan is made (plan.ts).
      return undefined;
  }
}

/** Whether a scalar is valid; the common cases without a conversion. */
export function scalarValid(scalar: ScalarType, value: JsonValue): boolean {
  switch (scalar) {
    case ScalarType.STRING:
      return typeof value === "string" && value.isWellFormed();
    case ScalarType.BOOL:
      return typeof value === "boolean";
    case ScalarType.DOUBLE:
      return typeof value === "number" || scalarOf(scalar, value) !== undefined;
    case ScalarType.INT32:
      return typeof value === "number"
        ? Number.isInteger(value) && value >= int32Min && value <= int32Max
        : scalarOf(scalar, value) !== undefined;
    case ScalarType.INT64:
      return Number.isSafeInteger(value) || scalarOf(scalar, value) !== undefined;
    default:
      return scalarOf(scalar, value) !== undefined;
  }
}

/** A number or bigint as the REST writer writes it: NaN and infinities as strings, 64-bit integers as numbers when safe. */
export function writeNumber(value: number | bigint): JsonValue {
  if (typeof value === "bigint") {
    const n = Number(value);
    return Number.isSafeInteger(n) ? n : value.toString();
  }
  if (Number.isFinite(value)) return value;
  return Number.isNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity";
}

/** A valid scalar's REST JSON, as the writer gives it back (the value itself when it already is). */
export function scalarJson(scalar: ScalarType, value: JsonValue): JsonValue {
  switch (scalar) {
    case ScalarType.STRING:
    case ScalarType.BOOL:
      return value;
    case ScalarType.DOUBLE:
    case ScalarType.INT32:
      if (typeof value === "number") return value;
      break;
    case ScalarType.INT64:
      if (Number.isSafeInteger(value) && !Object.is(value, -0)) return value;
      break;
  }
  const local = scalarOf(scalar, value);
  return typeof local === "number" || typeof local === "bigint" ? writeNumber(local) : (local ?? null);
}

/** The JSON of an unset implicit scalar: the writer writes its zero value. */
export function scalarZero(scalar: ScalarType): JsonValue {
  switch (scalar) {
    case ScalarType.STRING:
      return "";
    case ScalarType.BOOL:
      return false;
    default:
      return 0;
  }
}

/** The number of an enum value given as a name or a number; undefined when the reader refuses it. */
export function enumOf(rule: EnumRule, value: JsonValue): number | undefined {
  if (typeof value === "string") return rule.numbers.get(value);
  // Open enums take any int32.
  if (typeof value === "number" && Number.isInteger(value) && value >= int32Min && value <= int32Max)
    return value;
  return undefined;
}

/** An enum value's REST JSON: its name, or its number when the contract has no name for it. */
export function enumJson(rule: EnumRule, number: number): JsonValue {
  return rule.names.get(number) ?? number;
}

/** Whether a valid singular value's REST JSON is the zero value of an implicit field (so it counts as unset). */
export function isZeroJson(rule: ValueRule, json: JsonValue): boolean {
  if (rule.kind === "enum") return json === enumJson(rule.enum, rule.enum.zero);
  return json === 0 || json === "" || json === false;
}
