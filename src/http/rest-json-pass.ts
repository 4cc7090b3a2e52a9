import {
  getOption,
  hasOption,
  ScalarType,
  type DescField,
  type DescMessage,
  type JsonObject,
  type JsonValue,
} from "@bufbuild/protobuf";
import { FeatureSet_FieldPresence } from "@bufbuild/protobuf/wkt";
import {
  JsonPresence,
  json_list,
  json_presence,
  json_union,
} from "../../gen/apikeyserver/v1/json_options_pb.js";

// The JSON fast path of the HTTP surfaces (docs/architecture.md, "JSON in, JSON out"): REST JSON is checked
// against the contract and brought into the form the REST JSON writer (rest-json.ts) gives the same value,
// without building a protobuf message. `passes` is conservative: it accepts only JSON it is sure protobuf's
// reader (fromRestJson / fromJson) accepts too, and answers false for anything else (a wrong type, an
// unknown key of a request, a lowerCamelCase name, a 64-bit integer as a string...). The caller then takes
// the protobuf path, which gives the exact error, or the exact value, it always gave.

/** How one field is checked and normalized. */
interface PassField {
  readonly field: DescField;
  readonly presence: JsonPresence;
  /** Written even when unset (proto3 implicit presence, lists and maps), as `alwaysEmitImplicit` does. */
  readonly implicit: boolean;
  /** The plan of the field's message type (singular, list items, map values); undefined for scalars and WKTs. */
  readonly nested: PassPlan | undefined;
}

/** A `json_union` oneof: one key, the member chosen by the value's JSON type. */
interface PassUnion {
  readonly key: string;
  readonly presence: JsonPresence;
  readonly members: ReadonlyMap<string, PassField>;
}

interface PassPlan {
  readonly desc: DescMessage;
  /** Known keys: proto field names and union keys. */
  readonly fields: ReadonlyMap<string, PassField>;
  readonly unions: ReadonlyMap<string, PassUnion>;
  /** Keys protobuf's reader knows but the fast path does not take: lowerCamelCase names, union members' own names. */
  readonly other: ReadonlySet<string>;
  /** Plain oneofs (none in the contract today): at most one member may be set. */
  readonly oneofs: readonly (readonly string[])[];
  /** A `json_list` message: its JSON is the array of its one repeated field. */
  readonly list: PassField | undefined;
  /** A well-known type whose JSON is checked by kind only. */
  readonly wkt: "struct" | "list" | "value" | "other" | undefined;
}

const plans = new WeakMap<DescMessage, PassPlan>();

function planOf(desc: DescMessage): PassPlan {
  const cached = plans.get(desc);
  if (cached !== undefined) return cached;
  const fields = new Map<string, PassField>();
  const unions = new Map<string, PassUnion>();
  const other = new Set<string>();
  const plan: PassPlan = {
    desc,
    fields,
    unions,
    other,
    oneofs: desc.oneofs.filter((o) => !hasOption(o, json_union)).map((o) => o.fields.map((f) => f.name)),
    list: undefined,
    wkt: wktOf(desc),
  };
  plans.set(desc, plan);
  if (plan.wkt !== undefined) return plan;
  for (const field of desc.fields) {
    if (field.jsonName !== field.name) other.add(field.jsonName);
    if (field.oneof !== undefined && hasOption(field.oneof, json_union)) {
      other.add(field.name);
      continue;
    }
    fields.set(field.name, passField(field));
  }
  for (const oneof of desc.oneofs) {
    if (!hasOption(oneof, json_union)) continue;
    const members = new Map<string, PassField>();
    for (const field of oneof.fields) members.set(jsonTypeOf(field), passField(field));
    unions.set(oneof.name, { key: oneof.name, presence: getOption(oneof, json_union).presence, members });
    if (oneof.localName !== oneof.name) other.add(oneof.localName);
  }
  if (getOption(desc, json_list)) {
    (plan as { list: PassField | undefined }).list = fields.get(desc.fields[0]?.name ?? "");
  }
  return plan;
}

function wktOf(desc: DescMessage): PassPlan["wkt"] {
  if (desc.file.proto.package !== "google.protobuf") return undefined;
  switch (desc.typeName) {
    case "google.protobuf.Struct":
      return "struct";
    case "google.protobuf.ListValue":
      return "list";
    case "google.protobuf.Value":
      return "value";
    default:
      return "other";
  }
}

function passField(field: DescField): PassField {
  const message = field.fieldKind === "scalar" || field.fieldKind === "enum" ? undefined : field.message;
  const implicit =
    field.fieldKind === "list" ||
    field.fieldKind === "map" ||
    ((field.fieldKind === "scalar" || field.fieldKind === "enum") &&
      field.oneof === undefined &&
      field.presence === FeatureSet_FieldPresence.IMPLICIT);
  return {
    field,
    presence: getOption(field, json_presence),
    implicit,
    nested: message === undefined ? undefined : planOf(message),
  };
}

/** The JSON type a union member reads (as rest-json.ts chooses members). */
function jsonTypeOf(field: DescField): string {
  if (field.fieldKind === "scalar") return scalarJsonType(field.scalar);
  if (field.fieldKind === "enum") return "string";
  if (field.fieldKind === "message") {
    const type = field.message;
    if (type.typeName === "google.protobuf.ListValue" || getOption(type, json_list)) return "array";
    return "object";
  }
  return "none";
}

function scalarJsonType(scalar: ScalarType): string {
  switch (scalar) {
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return "string";
    case ScalarType.BOOL:
      return "boolean";
    default:
      return "number";
  }
}

function typeOfValue(value: JsonValue): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const float32Max = 3.4028234663852886e38;

function scalarPasses(scalar: ScalarType, v: JsonValue): boolean {
  switch (scalar) {
    case ScalarType.STRING:
      return typeof v === "string";
    case ScalarType.BOOL:
      return typeof v === "boolean";
    case ScalarType.DOUBLE:
      return typeof v === "number";
    case ScalarType.FLOAT:
      return typeof v === "number" && Math.abs(v) <= float32Max;
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return Number.isInteger(v) && (v as number) >= -0x80000000 && (v as number) <= 0x7fffffff;
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffffffff;
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return Number.isSafeInteger(v);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return Number.isSafeInteger(v) && (v as number) >= 0;
    default:
      // Bytes (base64) and anything else: left to protobuf's reader.
      return false;
  }
}

/** Whether one non-null singular value (a scalar, or a message of the field's type) passes. */
function valuePasses(f: PassField, v: JsonValue, keepUnknown: boolean): boolean {
  const { field } = f;
  if (f.nested !== undefined) return messagePasses(f.nested, v, keepUnknown);
  if (field.fieldKind === "enum") return false;
  const scalar = field.fieldKind === "map" ? field.mapKind === "scalar" && field.scalar : field.scalar;
  return scalar !== undefined && scalar !== false && scalarPasses(scalar, v);
}

function fieldPasses(f: PassField, v: JsonValue, keepUnknown: boolean): boolean {
  if (v === null) return true;
  const { field } = f;
  if (field.fieldKind === "list") {
    if (!Array.isArray(v)) return false;
    for (const item of v) if (item === null || !valuePasses(f, item, keepUnknown)) return false;
    return true;
  }
  if (field.fieldKind === "map") {
    if (!isObject(v) || field.mapKey !== ScalarType.STRING) return false;
    for (const key in v) {
      const item = v[key];
      if (item === null || item === undefined || !valuePasses(f, item, keepUnknown)) return false;
    }
    return true;
  }
  return valuePasses(f, v, keepUnknown);
}

function messagePasses(plan: PassPlan, v: JsonValue, keepUnknown: boolean): boolean {
  switch (plan.wkt) {
    case undefined:
      break;
    case "struct":
      return isObject(v);
    case "list":
      return Array.isArray(v);
    case "value":
      return true;
    default:
      return false;
  }
  if (plan.list !== undefined) return fieldPasses(plan.list, v, keepUnknown) && Array.isArray(v);
  if (!isObject(v)) return false;
  for (const key in v) {
    const value = v[key] as JsonValue;
    const f = plan.fields.get(key);
    if (f !== undefined) {
      if (!fieldPasses(f, value, keepUnknown)) return false;
      continue;
    }
    const union = plan.unions.get(key);
    if (union !== undefined) {
      if (value === null) continue;
      const member = union.members.get(typeOfValue(value));
      if (member === undefined || !valuePasses(member, value, keepUnknown)) return false;
      continue;
    }
    if (!keepUnknown || plan.other.has(key)) return false;
  }
  for (const names of plan.oneofs) {
    let set = 0;
    for (const name of names) if (v[name] !== undefined) set++;
    if (set > 0) return false;
  }
  return true;
}

/**
 * Whether the fast path takes `json` as the REST JSON of `schema`: every known key has a value of its
 * type (`null` is unset), nothing is left for protobuf's reader to decide. Unknown keys: a request refuses
 * them (false, so protobuf's reader gives its `Unknown field` 400), a provider's answer may have them
 * (`keepUnknown`; `normalize` drops them, as protobuf's reader ignores them). Does not modify `json`.
 */
export function passes(schema: DescMessage, json: JsonValue, keepUnknown: boolean): boolean {
  return messagePasses(planOf(schema), json, keepUnknown);
}

/** The value the REST JSON writer gives an unset field: null, nothing (undefined), or the zero value. */
function unsetValue(f: PassField): JsonValue | undefined {
  if (f.presence === JsonPresence.NULL_WHEN_UNSET) return null;
  if (f.presence === JsonPresence.OMIT_WHEN_EMPTY || !f.implicit) return undefined;
  const { field } = f;
  if (field.fieldKind === "list") return [];
  if (field.fieldKind === "map") return {};
  if (field.fieldKind === "scalar") {
    const type = scalarJsonType(field.scalar);
    return type === "string" ? "" : type === "boolean" ? false : 0;
  }
  return undefined;
}

function isZero(f: PassField, v: JsonValue): boolean {
  const { field } = f;
  if (field.fieldKind === "list") return (v as JsonValue[]).length === 0;
  if (field.fieldKind === "map") {
    for (const _ in v as JsonObject) return false;
    return true;
  }
  if (field.fieldKind === "scalar" && f.implicit) return v === "" || v === 0 || v === false;
  return false;
}

function normalizeValue(f: PassField, v: JsonValue): void {
  const nested = f.nested;
  if (nested === undefined || nested.wkt !== undefined) return;
  const { field } = f;
  if (field.fieldKind === "list") for (const item of v as JsonValue[]) normalizeMessage(nested, item);
  else if (field.fieldKind === "map") {
    const map = v as JsonObject;
    for (const key in map) normalizeMessage(nested, map[key] as JsonValue);
  } else normalizeMessage(nested, v);
}

function normalizeMessage(plan: PassPlan, v: JsonValue): void {
  if (plan.wkt !== undefined) return;
  if (plan.list !== undefined) {
    normalizeValue(plan.list, v);
    return;
  }
  const json = v as JsonObject;
  // Keys the contract does not know (only a provider's answer has them: `passes` refuses them in requests).
  for (const key in json) if (!plan.fields.has(key) && !plan.unions.has(key)) delete json[key];
  for (const [key, f] of plan.fields) {
    const value = json[key];
    if (f.presence === JsonPresence.NULL_WHEN_EMPTY) {
      // Three states, as the writer gives them: absent stays absent, `null` and "" are `null`.
      if (value === "") json[key] = null;
      continue;
    }
    if (value === undefined || value === null || isZero(f, value)) {
      const unset = unsetValue(f);
      if (unset === undefined) delete json[key];
      else if (value !== unset) json[key] = unset;
      continue;
    }
    normalizeValue(f, value);
  }
  for (const [key, union] of plan.unions) {
    const value = json[key];
    if (value === undefined || value === null) {
      if (union.presence === JsonPresence.NULL_WHEN_UNSET) json[key] = null;
      else delete json[key];
      continue;
    }
    const member = union.members.get(typeOfValue(value));
    if (member !== undefined) normalizeValue(member, value);
  }
}

/**
 * Brings JSON that `passes` into the form the REST JSON writer gives the same message (in place): an unset
 * field (absent or `null`) becomes `null`, is left out, or gets its zero value as the field's presence and
 * json_presence say; an empty list or map with OMIT_WHEN_EMPTY is left out; keys the contract does not know
 * are dropped. The order of keys is the sender's, with added keys at the end.
 */
export function normalize(schema: DescMessage, json: JsonObject): JsonObject {
  normalizeMessage(planOf(schema), json);
  return json;
}
