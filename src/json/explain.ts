import type { DescOneof, JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { EnumRule, FieldRule, JsonKind, Plan, ValueRule } from "./plan.js";
import { isObject, kindOf, maxDepth } from "./json-value.js";
import { scalarOf } from "./scalar.js";

// Which 400 a REST JSON value that failed the reader's check (read.ts) gets. The answer is the one the
// REST form has always given, so it is found in the same two steps: first the json_options.proto shapes
// (a union's value, a json_list's items, a member's own name), walked unions first; then protobuf's JSON
// mapping over the value with unions and lists in protobuf's shape, key by key in the object's order, the
// first refusal winning. Only failing requests come here; the messages name keys, never values.

/** The 400 of a refused value: its message, and the key it names when it names one. */
export interface Refusal {
  readonly message: string;
  readonly param?: string;
}

class Refused extends Error {
  constructor(readonly refusal: Refusal) {
    super(refusal.message);
  }
}

const invalidField = (key: string): Refused =>
  new Refused({ message: `Invalid value for field "${key}"`, param: key });
const unknownField = (key: string): Refused => new Refused({ message: `Unknown field "${key}"`, param: key });
const invalidEnum = (rule: EnumRule): Refused =>
  new Refused({ message: `Invalid value for enum ${rule.desc.typeName}` });
/** A message type's value that is no object (or nests too deep); the request type itself has no name here. */
const invalidMessage = (plan: Plan, root: Plan): Refused =>
  new Refused({
    message: plan === root ? "Invalid request body" : `Invalid value for message ${plan.typeName}`,
  });
const tooDeep = (): Refused => new Refused({ message: "Invalid request body" });

/** The refusal of a value `validMessage` refused as `plan`. */
export function explain(plan: Plan, json: JsonValue): Refusal {
  try {
    const proto = plan.shaped ? shape(plan, json, plan.desc.name) : json;
    readMessage(plan, proto, 1, plan);
  } catch (err) {
    if (err instanceof Refused) return err.refusal;
    throw err;
  }
  // Not reached while read.ts and this file agree (test/json/ checks that they do).
  return { message: "Invalid request body" };
}

/** The first of `keys` that `json` has as its own property. */
function ownKey(json: JsonObject, keys: readonly (string | undefined)[]): string | undefined {
  for (const key of keys) if (key !== undefined && Object.hasOwn(json, key)) return key;
  return undefined;
}

/**
 * The json_options.proto step: refuses a union member's own name, a union value of no member's type and a
 * json_list item of the wrong type (naming `key`, the key the caller wrote), and returns the value in
 * protobuf's shape: a union's value under its member's name (after the object's other keys), a json_list
 * array as `{field: array}`. Copies only what changes.
 */
function shape(plan: Plan, json: JsonValue, key: string): JsonValue {
  const list = plan.list;
  if (list !== undefined) {
    if (!Array.isArray(json) || json.some((v) => kindOf(v) !== list.item)) throw invalidField(key);
    const nested = messagePlan(list.rule.value);
    const items = nested?.shaped === true ? json.map((v) => shape(nested, v, key)) : json;
    return { [list.rule.key]: items };
  }
  if (!isObject(json)) return json;
  let out = json;
  const put = (k: string, v: JsonValue | undefined): void => {
    if (out === json) out = { ...json };
    if (v === undefined) delete out[k];
    else out[k] = v;
  };
  for (const union of plan.unions) {
    const named = ownKey(json, union.memberKeys);
    if (named !== undefined) throw unknownField(named);
    const name = ownKey(json, [union.key, union.alias]);
    if (name === undefined) continue;
    const value = json[name];
    put(name, undefined);
    if (value === null || value === undefined) continue;
    const member = union.members.get(kindOf(value) as JsonKind);
    if (member === undefined) throw invalidField(union.key);
    const nested = messagePlan(member.value);
    put(member.key, nested?.shaped === true ? shape(nested, value, union.key) : value);
  }
  for (const rule of plan.fields) {
    const nested = messagePlan(rule.value);
    if (nested?.shaped !== true) continue;
    const name = ownKey(json, [rule.key, rule.alias]);
    const value = name === undefined ? undefined : json[name];
    if (name === undefined || value === undefined || value === null) continue;
    if (rule.shape === "list") {
      if (Array.isArray(value))
        put(
          name,
          value.map((item) => shape(nested, item, rule.key)),
        );
    } else if (rule.shape === "map") {
      if (isObject(value)) {
        const entries: JsonObject = {};
        for (const [k, item] of Object.entries(value)) entries[k] = shape(nested, item ?? null, rule.key);
        put(name, entries);
      }
    } else {
      put(name, shape(nested, value, rule.key));
    }
  }
  return out;
}

function messagePlan(rule: ValueRule): Plan | undefined {
  return rule.kind === "message" ? rule.plan : undefined;
}

/** protobuf's JSON reader over a value in protobuf's shape (member names, json_list messages as objects). */
function readMessage(plan: Plan, json: JsonValue, depth: number, root: Plan): void {
  if (plan.wkt !== undefined) {
    if (depth > maxDepth) throw invalidMessage(plan, root);
    switch (plan.wkt) {
      case "struct":
        if (!isObject(json)) throw invalidMessage(plan, root);
        for (const key of Object.keys(json)) readAny(json[key] as JsonValue, depth + 1);
        return;
      case "list":
        if (!Array.isArray(json)) throw invalidMessage(plan, root);
        for (const item of json) readAny(item, depth + 1);
        return;
      case "value":
        readAny(json, depth + 1);
        return;
    }
  }
  if (depth > maxDepth || !isObject(json)) throw invalidMessage(plan, root);
  const seen = new Set<FieldRule>();
  const oneofSeen = new Set<DescOneof>();
  for (const key of Object.keys(json)) {
    const rule = plan.protoKeys.get(key);
    if (rule === undefined) throw unknownField(key);
    if (seen.has(rule)) throw invalidField(rule.key);
    seen.add(rule);
    const value = json[key] as JsonValue;
    const { oneof } = rule.field;
    if (oneof !== undefined) {
      if (rule.field.fieldKind === "scalar" && value === null) continue;
      if (oneofSeen.has(oneof)) throw invalidField(oneof.name);
      oneofSeen.add(oneof);
    }
    readField(rule, value, depth, root);
  }
}

function readAny(json: JsonValue, depth: number): void {
  if (depth > maxDepth) throw tooDeep();
  if (typeof json !== "object" || json === null) return;
  if (Array.isArray(json)) for (const item of json) readAny(item, depth + 1);
  else for (const key of Object.keys(json)) readAny(json[key] as JsonValue, depth + 1);
}

/** A google.protobuf.Value takes `null`; every other type's list item or map value refuses it. */
function nullable(rule: ValueRule): boolean {
  return rule.kind === "message" && rule.plan.wkt === "value";
}

/** An enum value: a known name or an integer (an int32, since the contract's enums are open). */
function readEnum(rule: EnumRule, value: JsonValue, key: string, checkRange = true): void {
  if (typeof value === "number" && Number.isInteger(value)) {
    if (checkRange && (value < -0x80000000 || value > 0x7fffffff)) throw invalidField(key);
    return;
  }
  if (typeof value === "string" && rule.numbers.has(value)) return;
  throw invalidEnum(rule);
}

function readValue(rule: FieldRule, value: JsonValue, depth: number, root: Plan): void {
  const v = rule.value;
  switch (v.kind) {
    case "scalar":
      if (scalarOf(v.scalar, value) === undefined) throw invalidField(rule.key);
      return;
    case "enum":
      readEnum(v.enum, value, rule.key);
      return;
    case "message":
      readMessage(v.plan, value, depth + 1, root);
      return;
  }
}

function readField(rule: FieldRule, value: JsonValue, depth: number, root: Plan): void {
  switch (rule.shape) {
    case "single":
      if (value === null && !nullable(rule.value)) return;
      readValue(rule, value, depth, root);
      return;
    case "list":
      if (value === null) return;
      if (!Array.isArray(value)) throw invalidField(rule.key);
      for (const item of value) {
        if (item === null && !nullable(rule.value)) throw invalidField(rule.key);
        readValue(rule, item, depth, root);
      }
      return;
    case "map":
      if (value === null) return;
      if (!isObject(value)) throw invalidField(rule.key);
      for (const key of Object.keys(value)) {
        const item = value[key] as JsonValue;
        if (item === null && !nullable(rule.value)) throw invalidField(rule.key);
        // protobuf's reader converts the value, then checks the key, then the value's range.
        const v = rule.value;
        if (v.kind === "message") readMessage(v.plan, item, depth + 1, root);
        else if (v.kind === "enum") readEnum(v.enum, item, rule.key, false);
        if (!key.isWellFormed()) throw invalidField(rule.key);
        if (v.kind === "scalar" && scalarOf(v.scalar, item) === undefined) throw invalidField(rule.key);
        if (v.kind === "enum") readEnum(v.enum, item, rule.key);
      }
      return;
  }
}
