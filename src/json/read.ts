import type { DescMessage, JsonObject, JsonValue } from "@bufbuild/protobuf";
import { AppError } from "../errors/index.js";
import { explain } from "./explain.js";
import { isObject, kindOf, maxDepth } from "./json-value.js";
import { planOf, type FieldRule, type JsonKind, type Plan, type UnionRule, type ValueRule } from "./plan.js";
import { enumJson, enumOf, isZeroJson, scalarJson, scalarValid, scalarZero } from "./scalar.js";

// The reader of REST JSON: one walk checks a value against its message's plan, exactly as protobuf's JSON
// reader plus the json_options.proto rules would (test/json/ holds @bufbuild/protobuf as the oracle); a
// second brings a valid value into the form the REST writer (write.ts) gives the same message, in place.
// Only a value that fails the check is walked again, by explain.ts, for the error to answer.

/** How keys the contract does not know are taken: a caller's request refuses them, a provider's answer drops them. */
export type UnknownKeys = "refuse" | "drop";

/** Any JSON as a google.protobuf.Value at `depth`: only its nesting is limited. */
function validAny(value: JsonValue, depth: number): boolean {
  if (depth > maxDepth) return false;
  if (typeof value !== "object" || value === null) return true;
  if (Array.isArray(value)) {
    for (const item of value) if (!validAny(item, depth + 1)) return false;
    return true;
  }
  for (const key in value) if (!validAny(value[key] as JsonValue, depth + 1)) return false;
  return true;
}

/** Whether `value` is valid as a message of `plan` entered at `depth`. */
function validMessage(plan: Plan, value: JsonValue, depth: number, unknown: UnknownKeys): boolean {
  if (depth > maxDepth) return false;
  switch (plan.wkt) {
    case undefined:
      break;
    case "struct":
      if (!isObject(value)) return false;
      for (const key in value) if (!validAny(value[key] as JsonValue, depth + 1)) return false;
      return true;
    case "list":
      if (!Array.isArray(value)) return false;
      for (const item of value) if (!validAny(item, depth + 1)) return false;
      return true;
    case "value":
      return validAny(value, depth + 1);
  }
  const list = plan.list;
  if (list !== undefined) {
    if (!Array.isArray(value)) return false;
    for (const item of value) if (kindOf(item) !== list.item) return false;
    return validItems(list.rule, value, depth, unknown);
  }
  if (!isObject(value)) return false;
  for (const key in value) {
    const entry = plan.keys.get(key);
    if (entry === undefined) {
      if (unknown === "refuse") return false;
      continue;
    }
    const v = value[key] as JsonValue;
    switch (entry.kind) {
      case "field":
        // A field set under both its names: protobuf's reader refuses it.
        if (entry.alias && Object.hasOwn(value, entry.rule.key)) return false;
        if (!validField(entry.rule, v, depth, unknown)) return false;
        break;
      case "union": {
        if (entry.alias && Object.hasOwn(value, entry.rule.key)) return false;
        if (v === null) break;
        const member = entry.rule.members.get(kindOf(v) as JsonKind);
        if (member === undefined || !validSingle(member.value, v, depth, unknown)) return false;
        break;
      }
      case "member":
        if (unknown === "refuse") return false;
        break;
    }
  }
  for (const members of plan.oneofs) if (oneofCount(members, value) > 1) return false;
  return true;
}

/** How many members of a plain oneof the object sets (a scalar member's `null` does not count). */
function oneofCount(members: readonly FieldRule[], value: JsonObject): number {
  let set = 0;
  for (const m of members) {
    for (const key of m.alias === undefined ? [m.key] : [m.key, m.alias]) {
      if (!Object.hasOwn(value, key)) continue;
      if (value[key] !== null || m.value.kind !== "scalar") set++;
    }
  }
  return set;
}

function validSingle(rule: ValueRule, value: JsonValue, depth: number, unknown: UnknownKeys): boolean {
  switch (rule.kind) {
    case "scalar":
      return scalarValid(rule.scalar, value);
    case "enum":
      return enumOf(rule.enum, value) !== undefined || (unknown === "drop" && typeof value === "string");
    case "message":
      return validMessage(rule.plan, value, depth + 1, unknown);
  }
}

/** `null` where protobuf's reader takes it: a google.protobuf.Value. */
function nullable(rule: ValueRule): boolean {
  return rule.kind === "message" && rule.plan.wkt === "value";
}

function validItems(
  rule: FieldRule,
  items: readonly JsonValue[],
  depth: number,
  unknown: UnknownKeys,
): boolean {
  const { value } = rule;
  for (const item of items) {
    if (item === null && !nullable(value)) return false;
    if (!validSingle(value, item, depth, unknown)) return false;
  }
  return true;
}

function validField(rule: FieldRule, value: JsonValue, depth: number, unknown: UnknownKeys): boolean {
  if (value === null) {
    // Unset, except a google.protobuf.Value, for which null is a value.
    return rule.shape !== "single" || rule.value.kind !== "message" || rule.value.plan.wkt !== "value"
      ? true
      : validMessage(rule.value.plan, null, depth + 1, unknown);
  }
  switch (rule.shape) {
    case "single":
      return validSingle(rule.value, value, depth, unknown);
    case "list":
      return Array.isArray(value) && validItems(rule, value, depth, unknown);
    case "map":
      if (!isObject(value)) return false;
      for (const key in value) {
        const item = value[key] as JsonValue;
        if (item === null && !nullable(rule.value)) return false;
        if (!validSingle(rule.value, item, depth, unknown) || !key.isWellFormed()) return false;
      }
      return true;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Normalization of a valid value, in place.

/** A valid message value in the REST writer's form: the same object or array, changed in place. */
function normalizeMessage(plan: Plan, value: JsonValue): JsonValue {
  if (plan.wkt !== undefined) return value;
  if (plan.list !== undefined) {
    normalizeItems(plan.list.rule, value as JsonValue[]);
    return value;
  }
  const json = value as JsonObject;
  for (const key in json) {
    const entry = plan.keys.get(key);
    if (entry === undefined || entry.kind === "member") {
      delete json[key];
      continue;
    }
    const v = json[key] as JsonValue;
    if (entry.alias) {
      // The proto name, added during the loop: if the loop visits it too, normalizing twice changes nothing.
      delete json[key];
      json[entry.rule.key] = v;
    }
    if (entry.kind === "field") normalizeField(entry.rule, json, v);
    else normalizeUnion(entry.rule, json, v);
  }
  // Absent fields the writer writes anyway.
  for (const rule of plan.filled) {
    if (json[rule.key] === undefined) json[rule.key] = unsetJson(rule) ?? null;
  }
  for (const union of plan.nullUnions) if (json[union.key] === undefined) json[union.key] = null;
  return json;
}

function normalizeUnion(union: UnionRule, json: JsonObject, value: JsonValue): void {
  if (value === null) {
    if (union.presence !== "null") delete json[union.key];
    return;
  }
  const member = union.members.get(kindOf(value) as JsonKind) as FieldRule;
  json[union.key] = singleJson(member.value, value) ?? null;
}

/** A valid singular value's REST JSON; undefined for an enum name a provider's answer may add. */
function singleJson(rule: ValueRule, value: JsonValue): JsonValue | undefined {
  switch (rule.kind) {
    case "scalar":
      return scalarJson(rule.scalar, value);
    case "enum": {
      const number = enumOf(rule.enum, value);
      return number === undefined ? undefined : enumJson(rule.enum, number);
    }
    case "message":
      return normalizeMessage(rule.plan, value);
  }
}

function normalizeItems(rule: FieldRule, items: JsonValue[]): void {
  const { value } = rule;
  if (value.kind === "message") {
    for (let i = 0; i < items.length; i++) items[i] = normalizeMessage(value.plan, items[i] as JsonValue);
    return;
  }
  let kept = 0;
  for (const item of items) {
    const json = singleJson(value, item);
    if (json !== undefined) items[kept++] = json;
  }
  items.length = kept;
}

/** A present key's value (`null` included) in the writer's form. */
function normalizeField(rule: FieldRule, json: JsonObject, value: JsonValue): void {
  const { key } = rule;
  if (rule.presence === "emptyNull") {
    // Three states, as the writer gives them: `null` and "" are `null`, a string stays (absent stays absent).
    if (value === "") json[key] = null;
    return;
  }
  let out: JsonValue | undefined;
  switch (rule.shape) {
    case "single":
      if (value === null && !nullable(rule.value)) break;
      out = singleJson(rule.value, value);
      // A zero implicit value is unset for json_presence only: the writer writes it as it is (`-0` too).
      if (out !== undefined && rule.implicit && rule.presence !== "default" && isZeroJson(rule.value, out))
        out = undefined;
      break;
    case "list":
      if (!Array.isArray(value)) break;
      normalizeItems(rule, value);
      if (value.length > 0 || rule.presence === "default") out = value;
      break;
    case "map": {
      if (!isObject(value)) break;
      let entries = 0;
      for (const k in value) {
        const v = singleJson(rule.value, value[k] as JsonValue);
        if (v === undefined) delete value[k];
        else {
          value[k] = v;
          entries++;
        }
      }
      if (entries > 0 || rule.presence === "default") out = value;
      break;
    }
  }
  if (out !== undefined) {
    if (out !== value) json[key] = out;
    return;
  }
  // Unset (null, zero or empty): what the writer writes for an unset field.
  const unset = unsetJson(rule);
  if (unset === undefined) delete json[key];
  else if (value !== unset) json[key] = unset;
}

/** The REST JSON of an unset field: `null`, nothing (undefined), or its zero value. */
function unsetJson(rule: FieldRule): JsonValue | undefined {
  if (rule.presence === "null") return null;
  if (rule.presence === "omit") return undefined;
  switch (rule.shape) {
    case "list":
      return [];
    case "map":
      return {};
    case "single":
      if (!rule.implicit) return undefined;
      return rule.value.kind === "enum"
        ? enumJson(rule.value.enum, rule.value.enum.zero)
        : rule.value.kind === "scalar"
          ? scalarZero(rule.value.scalar)
          : undefined;
  }
}

// ---------------------------------------------------------------------------------------------------------

/**
 * Checks a caller's REST JSON against the message type and brings it, in place, into the form the REST
 * writer gives the same message: proto names for JSON (lowerCamelCase) ones, numbers for numeric strings
 * and safe 64-bit integers, `null`, nothing or the zero value for unset fields as their presence says.
 * Throws AppError `invalid_argument` with the message and `param` naming the key (never the value) for
 * JSON protobuf's reader, or the json_options.proto rules, refuse: an unknown field, a wrong type, a union
 * value of no member's type... JSON that fails is left as it was.
 */
export function readRequest(schema: DescMessage, json: JsonValue): JsonValue {
  const plan = planOf(schema);
  checkRequest(plan, json);
  return normalizeMessage(plan, json);
}

/**
 * Checks a provider's JSON answer as protobuf's reader would with `ignoreUnknownFields` and brings it, in
 * place, into the REST writer's form, keys the contract does not know dropped. Undefined when it does not
 * fit the message type (the caller answers 502).
 */
export function readAnswer(schema: DescMessage, json: JsonObject): JsonObject | undefined {
  const plan = planOf(schema);
  if (!validMessage(plan, json, 1, "drop")) return undefined;
  return normalizeMessage(plan, json) as JsonObject;
}

/** Checks REST JSON without changing it; the same error readRequest throws. */
export function checkRequest(plan: Plan, json: JsonValue): void {
  if (validMessage(plan, json, 1, "refuse")) return;
  const { message, param } = explain(plan, json);
  throw new AppError("invalid_argument", { message, ...(param === undefined ? {} : { param }) });
}
