import {
  fromJson,
  getOption,
  hasOption,
  isFieldSet,
  ScalarType,
  toJson,
  type DescField,
  type DescMessage,
  type DescOneof,
  type JsonObject,
  type JsonValue,
  type Message,
  type MessageShape,
} from "@bufbuild/protobuf";
import { FeatureSet_FieldPresence } from "@bufbuild/protobuf/wkt";
import {
  JsonPresence,
  json_list,
  json_presence,
  json_union,
} from "../../gen/apikeyserver/v1/json_options_pb.js";
import { AppError } from "../../src/errors/index.js";

// The test oracle of the JSON engine (src/json/): the REST JSON reader and writer as the server had them
// before the engine, on @bufbuild/protobuf's own fromJson/toJson. Kept as it was (only its imports moved),
// so the engine's 400s and JSON are held to exactly what callers always got (test/json/).
//
// The REST JSON form is protobuf's JSON (toJson/fromJson) plus the field options of json_options.proto,
// applied by a plan computed once per message type: the writer touches only the fields the plan names, and
// the reader rewrites only the keys that differ from protobuf's JSON before handing the object to fromJson.

/** What the writer does to one field after `toJson`; fields that need nothing have no step. */
interface FieldStep {
  readonly field: DescField;
  /** The JSON key (the proto field name). */
  readonly key: string;
  /** The keys the reader accepts: the proto name and the JSON (lowerCamelCase) name. */
  readonly readKeys: readonly string[];
  readonly presence: JsonPresence;
  /** The field holds 64-bit integers (singular, list items or map values), written as strings by toJson. */
  readonly int64: boolean;
  /** The plan of the field's message type (singular, list items or map values), when it has work to do. */
  readonly nested: Plan | undefined;
}

/** A oneof with the `json_union` option: one JSON key whose value's JSON type picks the member. */
interface UnionStep {
  readonly oneof: DescOneof;
  /** The JSON key (the oneof's name). */
  readonly key: string;
  /** The keys the reader accepts: the oneof's name and its lowerCamelCase form. */
  readonly readKeys: readonly string[];
  /** The members' own names, proto and JSON: not keys of the REST form. */
  readonly memberKeys: readonly string[];
  readonly presence: JsonPresence;
  /** The member that reads a value of each JSON type. */
  readonly members: ReadonlyMap<JsonType, DescField>;
}

type JsonType = "string" | "number" | "boolean" | "array" | "object";

interface Plan {
  readonly steps: FieldStep[];
  readonly unions: UnionStep[];
  /** Every JSON key of the message in declaration order, a union's key where its oneof is declared. */
  readonly order: readonly string[];
  /** With `json_list`: the one repeated field whose array is the message's JSON, and its items' JSON type. */
  readonly list: { readonly field: DescField; readonly item: JsonType } | undefined;
}

const int64Types: ReadonlySet<ScalarType> = new Set([
  ScalarType.INT64,
  ScalarType.UINT64,
  ScalarType.SINT64,
  ScalarType.FIXED64,
  ScalarType.SFIXED64,
]);

// Plans are computed once per message type; a type that is still being planned (a recursive type) is
// returned as is, so recursion terminates and the finished plan is seen by every reference.
const plans = new WeakMap<DescMessage, Plan>();
const planning = new Set<DescMessage>();

function hasWork(plan: Plan): boolean {
  return plan.steps.length > 0 || plan.unions.length > 0 || plan.list !== undefined;
}

function planOf(desc: DescMessage): Plan | undefined {
  // Well-known types have their own JSON form (Struct, Value, Timestamp...): never touch them.
  if (desc.file.proto.package === "google.protobuf") return undefined;
  const cached = plans.get(desc);
  if (cached !== undefined) return hasWork(cached) || planning.has(desc) ? cached : undefined;
  const unions = desc.oneofs.filter((o) => hasOption(o, json_union)).map(unionStep);
  const unionOf = new Map(unions.map((u) => [u.oneof, u]));
  const plan: Plan = {
    steps: [],
    unions,
    order: desc.members.flatMap((m) =>
      m.kind === "field" ? [m.name] : unionOf.has(m) ? [m.name] : m.fields.map((f) => f.name),
    ),
    list: getOption(desc, json_list) ? listField(desc) : undefined,
  };
  plans.set(desc, plan);
  planning.add(desc);
  try {
    for (const field of desc.fields) {
      const step = fieldStep(field);
      if (step !== undefined) plan.steps.push(step);
    }
  } catch (err) {
    // A misused option below this type: forget the partial plan, so every later use throws too.
    plans.delete(desc);
    throw err;
  } finally {
    planning.delete(desc);
  }
  return hasWork(plan) ? plan : undefined;
}

function fieldStep(field: DescField): FieldStep | undefined {
  const presence = getOption(field, json_presence);
  let int64 = false;
  let nested: Plan | undefined;
  switch (field.fieldKind) {
    case "scalar":
    case "list":
    case "map":
      if (field.scalar !== undefined) int64 = int64Types.has(field.scalar);
      if (field.message !== undefined) nested = planOf(field.message);
      break;
    case "message":
      nested = planOf(field.message);
      break;
    case "enum":
      break;
    default: {
      const _never: never = field;
      return _never;
    }
  }
  if (
    presence === JsonPresence.NULL_WHEN_EMPTY &&
    !(
      field.fieldKind === "scalar" &&
      field.scalar === ScalarType.STRING &&
      field.oneof === undefined &&
      field.presence !== FeatureSet_FieldPresence.IMPLICIT
    )
  ) {
    throw new Error(`${field.parent.typeName}.${field.name}: NULL_WHEN_EMPTY needs an optional string`);
  }
  if (presence === JsonPresence.UNSPECIFIED && !int64 && nested === undefined) return undefined;
  return { field, key: field.name, readKeys: keysOf(field.name, field.jsonName), presence, int64, nested };
}

function listField(desc: DescMessage): Plan["list"] {
  const [field, ...rest] = desc.fields;
  if (field?.fieldKind !== "list" || rest.length > 0) {
    throw new Error(`${desc.typeName}: json_list needs exactly one field, a repeated one`);
  }
  const item: JsonType =
    field.listKind === "message"
      ? "object"
      : field.listKind === "enum"
        ? "string"
        : scalarJsonType(field.scalar);
  return { field, item };
}

function scalarJsonType(scalar: ScalarType): JsonType {
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

function unionStep(oneof: DescOneof): UnionStep {
  const members = new Map<JsonType, DescField>();
  for (const field of oneof.fields) {
    const type = jsonTypeOf(field);
    const taken = members.get(type);
    if (taken !== undefined) {
      throw new Error(
        `${oneof.parent.typeName}.${oneof.name}: json_union members ${taken.name} and ${field.name} both read a JSON ${type}`,
      );
    }
    members.set(type, field);
  }
  return {
    oneof,
    key: oneof.name,
    readKeys: keysOf(oneof.name, oneof.localName),
    memberKeys: oneof.fields.flatMap((f) => keysOf(f.name, f.jsonName)),
    presence: getOption(oneof, json_union).presence,
    members,
  };
}

function keysOf(name: string, jsonName: string): readonly string[] {
  return name === jsonName ? [name] : [name, jsonName];
}

/** The first of `keys` that `json` has as its own property. */
function ownKey(json: JsonObject, keys: readonly string[]): string | undefined {
  for (const key of keys) if (Object.hasOwn(json, key)) return key;
  return undefined;
}

/** The JSON type of a oneof member's REST JSON (members are never lists or maps). */
function jsonTypeOf(field: DescField): JsonType {
  switch (field.fieldKind) {
    case "scalar":
      return scalarJsonType(field.scalar);
    case "enum":
      return "string";
    case "message": {
      const type = field.message;
      if (type.typeName === "google.protobuf.ListValue" || getOption(type, json_list)) return "array";
      if (type.typeName === "google.protobuf.Struct" || type.file.proto.package !== "google.protobuf")
        return "object";
      throw new Error(
        `${field.parent.typeName}.${field.name}: ${type.typeName} cannot be a json_union member`,
      );
    }
    case "list":
    case "map":
      throw new Error(`${field.parent.typeName}.${field.name}: a oneof member cannot be a list or map`);
    default: {
      const _never: never = field;
      return _never;
    }
  }
}

function toJsonNumber(value: JsonValue): JsonValue {
  if (typeof value !== "string") return value;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : value;
}

function isEmpty(message: Message, field: DescField): boolean {
  return !isFieldSet(message, field);
}

/** The message (or oneof member) value of a field, as plain data. */
function valueOf(message: Message, field: DescField): unknown {
  const record = message as unknown as Record<string, unknown>;
  if (field.oneof !== undefined) {
    const oneof = record[field.oneof.localName] as { case?: string; value?: unknown };
    return oneof.case === field.localName ? oneof.value : undefined;
  }
  return record[field.localName];
}

/** The member set in a oneof, if any. */
function setMember(message: Message, oneof: DescOneof): DescField | undefined {
  const { case: name } = (message as unknown as Record<string, { case?: string }>)[oneof.localName] ?? {};
  return name === undefined ? undefined : oneof.fields.find((f) => f.localName === name);
}

/**
 * Applies a plan to the JSON of one message. Returns the value to use: the same object; a copy with the
 * keys in declaration order when a `null` was added for a key toJson left out or a union's member moved to
 * the union's key (so the answer reads like OpenAI's); or, for a `json_list` message, its array.
 */
function applyPlan(plan: Plan, message: Message, json: JsonObject): JsonValue {
  let reorder = false;
  for (const step of plan.steps) {
    const { field, key } = step;
    if (step.presence === JsonPresence.NULL_WHEN_EMPTY) {
      // Set to "" (toJson writes it, the field having explicit presence) is OpenAI's `null`.
      if (json[key] === "") json[key] = null;
      continue;
    }
    if (step.presence !== JsonPresence.UNSPECIFIED && isEmpty(message, field)) {
      if (step.presence === JsonPresence.OMIT_WHEN_EMPTY) delete json[key];
      else {
        if (!(key in json)) reorder = true;
        json[key] = null;
      }
      continue;
    }
    const out = json[key];
    if (out === undefined || out === null) continue;
    if (step.int64) {
      if (Array.isArray(out)) json[key] = out.map(toJsonNumber);
      else if (typeof out === "object")
        for (const k of Object.keys(out)) out[k] = toJsonNumber(out[k] ?? null);
      else json[key] = toJsonNumber(out);
    }
    const nested = step.nested;
    if (nested === undefined) continue;
    const value = valueOf(message, field);
    if (field.fieldKind === "list" && Array.isArray(out)) {
      const items = value as readonly Message[];
      for (let i = 0; i < out.length; i++) {
        const item = out[i];
        const m = items[i];
        if (m !== undefined && isObject(item)) out[i] = applyPlan(nested, m, item);
      }
    } else if (field.fieldKind === "map" && isObject(out)) {
      const entries = value as Readonly<Record<string, Message>>;
      for (const [k, item] of Object.entries(out)) {
        const m = entries[k];
        if (m !== undefined && isObject(item)) out[k] = applyPlan(nested, m, item);
      }
    } else if (isObject(out) && value !== undefined) {
      json[key] = applyPlan(nested, value as Message, out);
    }
  }
  for (const union of plan.unions) {
    const member = setMember(message, union.oneof);
    const value = member === undefined ? undefined : json[member.name];
    if (member !== undefined) delete json[member.name];
    if (value !== undefined) json[union.key] = value;
    else if (union.presence === JsonPresence.NULL_WHEN_UNSET) json[union.key] = null;
    else continue;
    reorder = true;
  }
  if (plan.list !== undefined) return json[plan.list.field.name] ?? [];
  if (!reorder) return json;
  const ordered: JsonObject = {};
  for (const name of plan.order) {
    const v = json[name];
    if (v !== undefined) ordered[name] = v;
  }
  return ordered;
}

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// The reader's work: which plans hold a union or a json_list message somewhere below them. Decided after
// planning (a recursive type's plan is complete only then), once per plan.
const readWork = new WeakMap<Plan, boolean>();

function needsRead(plan: Plan): boolean {
  let known = readWork.get(plan);
  if (known === undefined) {
    known = reaches(plan, new Set());
    readWork.set(plan, known);
  }
  return known;
}

function reaches(plan: Plan, seen: Set<Plan>): boolean {
  if (seen.has(plan)) return false;
  seen.add(plan);
  if (plan.unions.length > 0 || plan.list !== undefined) return true;
  if (plan.steps.some((s) => s.presence === JsonPresence.NULL_WHEN_EMPTY)) return true;
  return plan.steps.some((s) => s.nested !== undefined && reaches(s.nested, seen));
}

/** REST JSON that does not fit the message's shape; names the JSON key, never the value. */
/** A REST JSON shape the contract's options do not allow; `param` is the key the caller wrote. */
class ShapeError extends Error {
  constructor(
    message: string,
    readonly param: string,
  ) {
    super(message);
  }
}

/**
 * Rewrites REST JSON into protobuf's JSON for one message: a union's key becomes its member's key (chosen
 * by the value's JSON type), a `json_list` message's array becomes `{field: array}`. Objects are copied
 * only where a key changes; the caller's JSON is never modified.
 */
function toProtoJson(plan: Plan, json: JsonValue, key: string): JsonValue {
  if (plan.list !== undefined) {
    const { field, item } = plan.list;
    // Checked here so that the error names the key the caller wrote, not the wrapper's hidden field.
    if (!Array.isArray(json) || json.some((v) => jsonTypeOfValue(v) !== item)) {
      throw new ShapeError(`Invalid value for field "${key}"`, key);
    }
    const nested = field.message === undefined ? undefined : planOf(field.message);
    const items =
      nested !== undefined && needsRead(nested) ? json.map((v) => toProtoJson(nested, v, key)) : json;
    return { [field.name]: items };
  }
  if (!isObject(json)) return json;
  let out = json;
  const put = (k: string, v: JsonValue | undefined) => {
    // Nothing changes: no copy (a provider's chunk read on the stream path is mostly left as it is).
    if (out === json && v === json[k] && (v !== undefined || !(k in json))) return;
    if (out === json) out = { ...json };
    if (v === undefined) delete out[k];
    else out[k] = v;
  };
  for (const union of plan.unions) {
    const named = ownKey(json, union.memberKeys);
    if (named !== undefined) throw new ShapeError(`Unknown field "${named}"`, named);
    const name = ownKey(json, union.readKeys);
    if (name === undefined) continue;
    const value = json[name];
    put(name, undefined);
    if (value === null || value === undefined) continue;
    const type = jsonTypeOfValue(value);
    const member = type === "null" ? undefined : union.members.get(type);
    if (member === undefined) throw new ShapeError(`Invalid value for field "${union.key}"`, union.key);
    const nested = member.message === undefined ? undefined : planOf(member.message);
    put(
      member.name,
      nested !== undefined && needsRead(nested) ? toProtoJson(nested, value, union.key) : value,
    );
  }
  for (const step of plan.steps) {
    if (step.presence === JsonPresence.NULL_WHEN_EMPTY) {
      // `null` is the field set to "" (protobuf's reader would take it for unset).
      const name = ownKey(json, step.readKeys);
      if (name !== undefined && json[name] === null) put(name, "");
      continue;
    }
    const nested = step.nested;
    if (nested === undefined || !needsRead(nested)) continue;
    const { field } = step;
    const name = ownKey(json, step.readKeys);
    const value = name === undefined ? undefined : json[name];
    if (name === undefined || value === undefined || value === null) continue;
    if (field.fieldKind === "list" && Array.isArray(value)) {
      const items = value.map((item) => toProtoJson(nested, item, field.name));
      put(name, items.every((item, i) => item === value[i]) ? value : items);
    } else if (field.fieldKind === "map" && isObject(value)) {
      const entries: JsonObject = {};
      for (const [k, item] of Object.entries(value))
        entries[k] = toProtoJson(nested, item ?? null, field.name);
      put(name, entries);
    } else if (field.fieldKind === "message") {
      put(name, toProtoJson(nested, value, field.name));
    }
  }
  return out;
}

/** The JSON type of a value; `null` has none a member or list item could take. */
function jsonTypeOfValue(value: JsonValue): JsonType | "null" {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  switch (typeof value) {
    case "string":
      return "string";
    case "number":
      return "number";
    case "boolean":
      return "boolean";
    default:
      return "object";
  }
}

/**
 * Writes a message as the REST JSON of the README's API section: proto (snake_case) field names, every implicit-presence
 * field even when zero or empty (`"index": 0`), unset explicit-presence fields left out, 64-bit integers as
 * JSON numbers when they are safe integers (as strings otherwise), and the options of json_options.proto
 * applied: `json_presence` NULL_WHEN_UNSET writes `null` for an unset field (or an empty list or map),
 * OMIT_WHEN_EMPTY leaves it out; a `json_union` oneof is written under the oneof's name as its member's
 * value; a `json_list` message is written as its array. The per-type work is planned once; only annotated,
 * 64-bit and union fields are touched per call.
 */
export function toRestJson<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): JsonValue {
  const json = toJson(schema, message, { useProtoFieldName: true, alwaysEmitImplicit: true });
  const plan = planOf(schema);
  return plan !== undefined && isObject(json) ? applyPlan(plan, message, json) : json;
}

/**
 * Builds a message from a provider's answer or chunk (OpenAI's JSON): protobuf's reader, ignoring the
 * fields the contract does not know, after the rewrites the contract's options need on reading (a
 * `JSON_PRESENCE_NULL_WHEN_EMPTY` field's `null` is the field set to ""; protobuf would take it for
 * unset). Throws what protobuf's reader throws for JSON that is no such message.
 */
export function fromProviderJson<Desc extends DescMessage>(
  schema: Desc,
  json: JsonValue,
): MessageShape<Desc> {
  const plan = planOf(schema);
  const protoJson = plan !== undefined && needsRead(plan) ? toProtoJson(plan, json, schema.name) : json;
  return fromJson(schema, protoJson, { ignoreUnknownFields: true });
}

/**
 * Builds a message from REST JSON (the form toRestJson writes). Accepts proto and JSON (lowerCamelCase)
 * field names; a `json_union` oneof is read from the oneof's name, the member chosen by the value's JSON
 * type. An unknown field or a value of the wrong type throws AppError `invalid_argument` with a message
 * naming the field (never the value, which may be a secret).
 */
export function fromRestJson<Desc extends DescMessage>(schema: Desc, json: JsonValue): MessageShape<Desc> {
  // Outside the try: a misused option is the contract's fault, not the caller's.
  const plan = planOf(schema);
  try {
    const protoJson = plan !== undefined && needsRead(plan) ? toProtoJson(plan, json, schema.name) : json;
    return fromJson(schema, protoJson, { ignoreUnknownFields: false });
  } catch (err) {
    const { message, param } =
      err instanceof ShapeError ? { message: err.message, param: err.param } : describeJsonError(err, schema);
    throw new AppError("invalid_argument", {
      message,
      ...(param === undefined ? {} : { param }),
      cause: err,
    });
  }
}

const unknownKey = /key "([^"]*)" is unknown/;
// protobuf-es does not say which field an enum value or a non-object message value was for; the type is
// the best we can name.
const badEnum = /^cannot decode enum ([\w.]+) from JSON/;
const badMessage = /^cannot decode message ([\w.]+) from JSON/;

/**
 * Turns protobuf-es's decode errors into a short message that names the field but never the value, and the
 * field's name as `param` when it is known.
 */
function describeJsonError(err: unknown, schema: DescMessage): { message: string; param?: string } {
  const cause = err instanceof Error ? err.cause : undefined;
  if (typeof cause === "object" && cause !== null && "field" in cause && typeof cause.field === "function") {
    const field = (cause.field as () => { name: string })();
    return { message: `Invalid value for field "${field.name}"`, param: field.name };
  }
  const unknown = unknownKey.exec(err instanceof Error ? err.message : "");
  if (unknown !== null) return { message: `Unknown field "${unknown[1] ?? ""}"`, param: unknown[1] ?? "" };
  const enumType = badEnum.exec(err instanceof Error ? err.message : "");
  if (enumType !== null) return { message: `Invalid value for enum ${enumType[1] ?? ""}` };
  const messageType = badMessage.exec(err instanceof Error ? err.message : "");
  if (messageType !== null && messageType[1] !== schema.typeName) {
    return { message: `Invalid value for message ${messageType[1] ?? ""}` };
  }
  return { message: "Invalid request body" };
}
