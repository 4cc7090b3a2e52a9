import {
  fromJson,
  getOption,
  isFieldSet,
  ScalarType,
  toJson,
  type DescField,
  type DescMessage,
  type JsonObject,
  type JsonValue,
  type Message,
  type MessageShape,
} from "@bufbuild/protobuf";
import { JsonPresence, json_presence } from "../../gen/apikeyserver/v1/json_options_pb.js";
import { AppError } from "../errors/index.js";

/** What the writer does to one field after `toJson`; fields that need nothing have no step. */
interface FieldStep {
  readonly field: DescField;
  /** The JSON key (the proto field name). */
  readonly key: string;
  readonly presence: JsonPresence;
  /** The field holds 64-bit integers (singular, list items or map values), written as strings by toJson. */
  readonly int64: boolean;
  /** The plan of the field's message type (singular, list items or map values), when it has work to do. */
  readonly nested: Plan | undefined;
}

interface Plan {
  readonly steps: FieldStep[];
  /** Every JSON key of the message in field order. */
  readonly order: readonly string[];
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

function planOf(desc: DescMessage): Plan | undefined {
  // Well-known types have their own JSON form (Struct, Value, Timestamp...): never touch them.
  if (desc.file.proto.package === "google.protobuf") return undefined;
  const cached = plans.get(desc);
  if (cached !== undefined) return cached.steps.length > 0 || planning.has(desc) ? cached : undefined;
  const plan: Plan = { steps: [], order: desc.fields.map((f) => f.name) };
  plans.set(desc, plan);
  planning.add(desc);
  for (const field of desc.fields) {
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
    if (presence !== JsonPresence.UNSPECIFIED || int64 || nested !== undefined) {
      plan.steps.push({ field, key: field.name, presence, int64, nested });
    }
  }
  planning.delete(desc);
  return plan.steps.length > 0 ? plan : undefined;
}
const planning = new Set<DescMessage>();

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

/**
 * Applies a plan to the JSON of one message. Returns the object to use: the same one, or, when a `null` had
 * to be added for a key toJson left out, a copy with the keys in field order (so the answer reads like
 * OpenAI's).
 */
function applyPlan(plan: Plan, message: Message, json: JsonObject): JsonObject {
  let inserted = false;
  for (const step of plan.steps) {
    const { field, key } = step;
    if (step.presence !== JsonPresence.UNSPECIFIED && isEmpty(message, field)) {
      if (step.presence === JsonPresence.OMIT_WHEN_EMPTY) delete json[key];
      else {
        if (!(key in json)) inserted = true;
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
  if (!inserted) return json;
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

/**
 * Writes a message as the REST JSON of SPEC S4: proto (snake_case) field names, every implicit-presence
 * field even when zero or empty (`"index": 0`), unset explicit-presence fields left out, 64-bit integers as
 * JSON numbers when they are safe integers (as strings otherwise), and the field option
 * `apikeyserver.v1.json_presence` applied: NULL_WHEN_UNSET writes `null` for an unset field (or an empty
 * list or map), OMIT_WHEN_EMPTY leaves it out. The per-type work is planned once; only annotated and
 * 64-bit fields are touched per call.
 */
export function toRestJson<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): JsonValue {
  const json = toJson(schema, message, { useProtoFieldName: true, alwaysEmitImplicit: true });
  const plan = planOf(schema);
  return plan !== undefined && isObject(json) ? applyPlan(plan, message, json) : json;
}

/**
 * Builds a message from REST JSON. Accepts proto and JSON (lowerCamelCase) field names; an unknown field or
 * a value of the wrong type throws AppError `invalid_argument` with a message naming the field (never the
 * value, which may be a secret).
 */
export function fromRestJson<Desc extends DescMessage>(schema: Desc, json: JsonValue): MessageShape<Desc> {
  try {
    return fromJson(schema, json, { ignoreUnknownFields: false });
  } catch (err) {
    throw new AppError("invalid_argument", { message: describeJsonError(err), cause: err });
  }
}

const unknownKey = /key "([^"]*)" is unknown/;
// protobuf-es does not say which field an enum value was for; the enum type is the best we can name.
const badEnum = /^cannot decode enum ([\w.]+) from JSON/;

/** Turns protobuf-es's decode errors into a short message that names the field but never the value. */
function describeJsonError(err: unknown): string {
  const cause = err instanceof Error ? err.cause : undefined;
  if (typeof cause === "object" && cause !== null && "field" in cause && typeof cause.field === "function") {
    const field = (cause.field as () => { name: string })();
    return `Invalid value for field "${field.name}"`;
  }
  const unknown = unknownKey.exec(err instanceof Error ? err.message : "");
  if (unknown !== null) return `Unknown field "${unknown[1] ?? ""}"`;
  const enumType = badEnum.exec(err instanceof Error ? err.message : "");
  if (enumType !== null) return `Invalid value for enum ${enumType[1] ?? ""}`;
  return "Invalid request body";
}
