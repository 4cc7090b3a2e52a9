import type { DescMessage, JsonObject, JsonValue, MessageShape } from "@bufbuild/protobuf";
import type { ListValue, Value } from "@bufbuild/protobuf/wkt";
import { planOf, type FieldRule, type Plan, type UnionRule, type ValueRule } from "./plan.js";
import { enumJson, writeNumber } from "./scalar.js";

// The REST JSON writer: a message (of a service that answers with one) as the REST form the reader
// (read.ts) normalizes to, driven by the same plan.

type Fields = Readonly<Record<string, unknown>>;

const nonFinite = "google.protobuf.Value cannot be NaN or Infinity";

/** A Struct field's JSON (a message holds it as a JSON object), copied; NaN and infinities have no JSON. */
function copyJson(value: unknown): JsonValue {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error(nonFinite);
    return value;
  }
  if (typeof value !== "object" || value === null) return value as JsonValue;
  if (Array.isArray(value)) return value.map(copyJson);
  const out: JsonObject = {};
  for (const key of Object.keys(value)) setOwn(out, key, copyJson((value as Fields)[key]));
  return out;
}

/** Sets a key as an own property, `__proto__` included. */
export function setOwn(target: JsonObject, key: string, value: JsonValue): void {
  if (key === "__proto__")
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  else target[key] = value;
}

function valueJson(value: Value): JsonValue {
  const { kind } = value;
  switch (kind.case) {
    case "nullValue":
      return null;
    case "numberValue":
      if (!Number.isFinite(kind.value)) throw new Error(nonFinite);
      return kind.value;
    case "boolValue":
    case "stringValue":
      return kind.value;
    case "structValue": {
      const out: JsonObject = {};
      for (const key of Object.keys(kind.value.fields))
        setOwn(out, key, valueJson(kind.value.fields[key] as Value));
      return out;
    }
    case "listValue":
      return kind.value.values.map(valueJson);
    default:
      throw new Error("google.protobuf.Value must have a value");
  }
}

function writeValue(rule: ValueRule, value: unknown): JsonValue {
  switch (rule.kind) {
    case "scalar":
      if (typeof value === "number" || typeof value === "bigint") return writeNumber(value);
      if (rule.long !== undefined) return writeNumber(BigInt(value as string));
      return value as JsonValue;
    case "enum":
      return enumJson(rule.enum, value as number);
    case "message":
      switch (rule.plan.wkt) {
        case undefined:
          return writeMessage(rule.plan, value as Fields);
        case "struct":
          // Held as a JSON object, except inside a Value (which this engine never is).
          return copyJson(value);
        case "value":
          return valueJson(value as Value);
        case "list":
          return (value as ListValue).values.map(valueJson);
      }
  }
}

/** Whether a field is set, as protobuf's `isFieldSet` says. */
function isSet(rule: FieldRule, message: Fields): boolean {
  const value = message[rule.localName];
  switch (rule.shape) {
    case "list":
      return (value as readonly unknown[]).length > 0;
    case "map":
      return Object.keys(value as object).length > 0;
    case "single":
      if (rule.oneof !== undefined)
        return (message[rule.oneof.localName] as { case?: string }).case === rule.localName;
      if (!rule.implicit) return value !== undefined && Object.hasOwn(message, rule.localName);
      if (rule.value.kind === "enum") return value !== rule.value.enum.zero;
      return value !== 0 && value !== 0n && value !== "" && value !== false;
  }
}

/** What protobuf's writer writes for a field, always emitting implicit fields; undefined when it leaves it out. */
function fieldJson(rule: FieldRule, message: Fields): JsonValue | undefined {
  if (rule.presence !== "default" && !isSet(rule, message))
    return rule.presence === "null" ? null : undefined;
  const value =
    rule.oneof !== undefined
      ? (message[rule.oneof.localName] as { case?: string; value?: unknown }).case === rule.localName
        ? (message[rule.oneof.localName] as { value?: unknown }).value
        : undefined
      : message[rule.localName];
  switch (rule.shape) {
    case "list":
      return (value as readonly unknown[]).map((item) => writeValue(rule.value, item));
    case "map": {
      const out: JsonObject = {};
      for (const key of Object.keys(value as object))
        setOwn(out, key, writeValue(rule.value, (value as Fields)[key]));
      return out;
    }
    case "single":
      if (rule.oneof !== undefined) return value === undefined ? undefined : writeValue(rule.value, value);
      if (!rule.implicit && !isSet(rule, message)) return undefined;
      // JSON_PRESENCE_NULL_WHEN_EMPTY: set to "" is `null` (unset was left out above).
      if (value === "" && rule.presence === "emptyNull") return null;
      return writeValue(rule.value, value);
  }
}

function unionJson(union: UnionRule, message: Fields): JsonValue | undefined {
  const { case: name, value } = message[union.localName] as { case?: string; value?: unknown };
  if (name !== undefined) {
    for (const member of union.members.values()) {
      if (member.localName === name) return writeValue(member.value, value);
    }
  }
  return union.presence === "null" ? null : undefined;
}

/**
 * The REST form keeps protobuf's writer's key order (by field number) unless a `null` is written for a
 * field that writer leaves out or a union is written: then the keys follow the declaration, as OpenAI's
 * JSON has them.
 */
function declarationOrdered(plan: Plan, message: Fields): boolean {
  for (const union of plan.unions) {
    if (union.presence === "null" || (message[union.localName] as { case?: string }).case !== undefined)
      return true;
  }
  for (const rule of plan.fields) {
    if (rule.presence === "null" && rule.shape === "single" && !rule.implicit && !isSet(rule, message))
      return true;
  }
  return false;
}

function writeMessage(plan: Plan, message: Fields): JsonValue {
  const list = plan.list;
  if (list !== undefined) {
    return (message[list.rule.localName] as readonly unknown[]).map((item) =>
      writeValue(list.rule.value, item),
    );
  }
  const order = declarationOrdered(plan, message) ? plan.declarationOrder : plan.numberOrder;
  const json: JsonObject = {};
  for (const member of order) {
    const value = "members" in member ? unionJson(member, message) : fieldJson(member, message);
    if (value !== undefined) setOwn(json, member.key, value);
  }
  return json;
}

/**
 * Writes a message as REST JSON (README, API): proto (snake_case) field names; every implicit-presence
 * field even when zero or empty (`"index": 0`); unset explicit-presence fields left out; 64-bit integers
 * as JSON numbers when they are safe integers (strings otherwise); NaN and infinities as protobuf's JSON
 * strings; and the options of json_options.proto: `json_presence` NULL_WHEN_UNSET writes `null` for an
 * unset field (or an empty list or map), OMIT_WHEN_EMPTY leaves it out; a `json_union` oneof is written
 * under the oneof's name as its member's value; a `json_list` message as its array. Throws a plain Error
 * for a Struct holding NaN or an infinity (which JSON cannot express), or for a type plan.ts refuses.
 */
export function toRestJson<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): JsonValue {
  const plan = planOf(schema);
  if (plan.wkt !== undefined) throw new Error(`${plan.typeName}: write its JSON directly`);
  return writeMessage(plan, message);
}
