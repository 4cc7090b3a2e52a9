import {
  getOption,
  hasOption,
  ScalarType,
  type DescEnum,
  type DescField,
  type DescMessage,
  type DescOneof,
} from "@bufbuild/protobuf";
import { FeatureSet_FieldPresence } from "@bufbuild/protobuf/wkt";
import {
  JsonPresence,
  json_list,
  json_presence,
  json_union,
} from "../../gen/apikeyserver/v1/json_options_pb.js";

// The compiled plan of one message type: everything the reader (read.ts), the writer (write.ts) and the
// message builder (message.ts) need to know about its REST JSON form, decided once per type. The REST form
// is protobuf's JSON with proto (snake_case) names plus the options of proto/apikeyserver/v1/json_options.proto.

/** A JSON value's type, as a `json_union` member or a `json_list` item is chosen by it. */
export type JsonKind = "string" | "number" | "boolean" | "array" | "object";

/**
 * What the writer does with an unset field: the default rule, `null`, or leaving it out; `emptyNull`
 * (JSON_PRESENCE_NULL_WHEN_EMPTY, an `optional string` only) leaves it out when unset and writes `null` when
 * it is set to "", and reads `null` as "".
 */
export type Presence = "default" | "null" | "omit" | "emptyNull";

/** The value of a field (a singular field, a list item or a map value). */
export type ValueRule =
  | { readonly kind: "scalar"; readonly scalar: ScalarType; readonly long: LongForm }
  | { readonly kind: "enum"; readonly enum: EnumRule }
  | { readonly kind: "message"; readonly plan: Plan };

/** How a 64-bit integer is held in a message: bigint, or string with `jstype = JS_STRING`; none for others. */
export type LongForm = "bigint" | "string" | undefined;

export interface EnumRule {
  readonly desc: DescEnum;
  /** Value numbers by JSON name and by proto name (the proto name wins, as protobuf's reader has it). */
  readonly numbers: ReadonlyMap<string, number>;
  /** The name the writer gives a value number. */
  readonly names: ReadonlyMap<number, string>;
  readonly zero: number;
}

export interface FieldRule {
  readonly field: DescField;
  /** The REST key (the proto name). */
  readonly key: string;
  /** The JSON (lowerCamelCase) name when it differs: accepted by the reader, renamed by normalization. */
  readonly alias: string | undefined;
  readonly localName: string;
  readonly shape: "single" | "list" | "map";
  readonly value: ValueRule;
  /** json_presence; `default` when the field has none. */
  readonly presence: Presence;
  /** Proto3 implicit presence (a singular scalar or enum outside a oneof): unset reads as its zero value. */
  readonly implicit: boolean;
  /** A plain oneof (not json_union) the field belongs to. */
  readonly oneof: DescOneof | undefined;
  /** For a map: the key type, which must be a string. */
  readonly mapKey: ScalarType | undefined;
}

/** A `json_union` oneof: one REST key whose value's JSON type picks the member. */
export interface UnionRule {
  readonly oneof: DescOneof;
  readonly key: string;
  readonly alias: string | undefined;
  readonly localName: string;
  readonly presence: Presence;
  readonly members: ReadonlyMap<JsonKind, FieldRule>;
  /** The members' own names, proto and JSON, in declaration order: not keys of the REST form. */
  readonly memberKeys: readonly string[];
}

/** What a key of a REST JSON object is. */
export type KeyRule =
  | { readonly kind: "field"; readonly rule: FieldRule; readonly alias: boolean }
  | { readonly kind: "union"; readonly rule: UnionRule; readonly alias: boolean }
  | { readonly kind: "member" };

export interface Plan {
  readonly desc: DescMessage;
  readonly typeName: string;
  /** The well-known types the engine knows; their JSON is any object, array or value. */
  readonly wkt: "struct" | "list" | "value" | undefined;
  /** Every key of the REST form, with aliases and union members' own names (which it refuses). */
  readonly keys: ReadonlyMap<string, KeyRule>;
  /** Fields outside json_union oneofs, in declaration order. */
  readonly fields: readonly FieldRule[];
  readonly unions: readonly UnionRule[];
  /** Plain oneofs with their members (none in the contract today): at most one may be set. */
  readonly oneofs: readonly (readonly FieldRule[])[];
  /** With `json_list`: the one repeated field whose array is the message's JSON, and its items' JSON type. */
  readonly list: { readonly rule: FieldRule; readonly item: JsonKind } | undefined;
  /** protobuf's JSON keys of every field, union members included (proto and JSON names). */
  readonly protoKeys: ReadonlyMap<string, FieldRule>;
  /** The writer's key order: by field number, as protobuf's writer has it... */
  readonly numberOrder: readonly (FieldRule | UnionRule)[];
  /** ...or declaration order, once a `null` or a union is added (as the REST writer always had it). */
  readonly declarationOrder: readonly (FieldRule | UnionRule)[];
  /** Fields the writer writes even when unset (as `null`, zero, `[]` or `{}`): normalization adds them. */
  readonly filled: readonly FieldRule[];
  /** Unions the writer writes as `null` when unset. */
  readonly nullUnions: readonly UnionRule[];
  /** Whether a union or a json_list type is reachable: only then does reading need the REST shape walk. */
  shaped: boolean;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const plans = new WeakMap<DescMessage, Plan>();
/** Plans made by the outermost planOf call still running: forgotten together if one of them fails. */
let fresh: Plan[] | undefined;

/**
 * The plan of a message type, made once and cached. Throws a plain Error naming the type when the
 * contract misuses an option or uses a type the engine does not take (bytes, a map with a non-string
 * key, a well-known type other than Struct, ListValue and Value); every later use throws the same.
 */
export function planOf(desc: DescMessage): Plan {
  const cached = plans.get(desc);
  if (cached !== undefined) return cached;
  const outer = fresh === undefined;
  if (outer) fresh = [];
  try {
    const plan = makePlan(desc);
    if (outer) for (const p of fresh ?? []) p.shaped = reachesShape(p, new Set());
    return plan;
  } catch (err) {
    if (outer) for (const p of fresh ?? []) plans.delete(p.desc);
    throw err;
  } finally {
    if (outer) fresh = undefined;
  }
}

/**
 * Makes the plans of message types (and of every type they reach) now, so that a request never does, and
 * a misused json_options.proto option stops the start-up: call it where a component that reads or writes
 * these types is built.
 */
export function compileJsonPlans(schemas: readonly DescMessage[]): void {
  for (const schema of schemas) planOf(schema);
}

function makePlan(desc: DescMessage): Plan {
  const wkt = wktOf(desc);
  const keys = new Map<string, KeyRule>();
  const protoKeys = new Map<string, FieldRule>();
  const fields: FieldRule[] = [];
  const unions: UnionRule[] = [];
  const plan: Plan = {
    desc,
    typeName: desc.typeName,
    wkt,
    keys,
    fields,
    unions,
    oneofs: [],
    list: undefined,
    protoKeys,
    numberOrder: [],
    declarationOrder: [],
    filled: [],
    nullUnions: [],
    shaped: false,
  };
  plans.set(desc, plan);
  fresh?.push(plan);
  if (wkt !== undefined) return plan;

  const rules = new Map<DescField, FieldRule>();
  for (const field of desc.fields) {
    const rule = fieldRule(field);
    rules.set(field, rule);
    protoKeys.set(field.name, rule).set(field.jsonName, rule);
  }
  const unionOf = new Map<DescOneof, UnionRule>();
  const oneofs: FieldRule[][] = [];
  for (const oneof of desc.oneofs) {
    if (hasOption(oneof, json_union)) unionOf.set(oneof, unionRule(oneof, rules));
    else oneofs.push(oneof.fields.map((f) => rules.get(f) as FieldRule));
  }
  for (const field of desc.fields) {
    const rule = rules.get(field) as FieldRule;
    if (field.oneof !== undefined && unionOf.has(field.oneof)) continue;
    fields.push(rule);
    keys.set(rule.key, { kind: "field", rule, alias: false });
  }
  for (const union of unionOf.values()) {
    unions.push(union);
    keys.set(union.key, { kind: "union", rule: union, alias: false });
  }
  // Aliases and members' names after the proto names, which win where they collide.
  for (const rule of fields) {
    if (rule.alias !== undefined && !keys.has(rule.alias))
      keys.set(rule.alias, { kind: "field", rule, alias: true });
  }
  for (const union of unions) {
    if (union.alias !== undefined && !keys.has(union.alias))
      keys.set(union.alias, { kind: "union", rule: union, alias: true });
    for (const key of union.memberKeys) if (!keys.has(key)) keys.set(key, { kind: "member" });
  }
  const rule = (f: DescField): FieldRule => rules.get(f) as FieldRule;
  const mutable = plan as Mutable<Plan>;
  mutable.oneofs = oneofs;
  mutable.filled = fields.filter(
    (f) =>
      f.presence === "null" ||
      (f.presence === "default" && (f.shape !== "single" || (f.implicit && f.value.kind !== "message"))),
  );
  mutable.nullUnions = unions.filter((u) => u.presence === "null");
  mutable.list = getOption(desc, json_list) ? listOf(desc, rules) : undefined;
  mutable.declarationOrder = desc.members.flatMap((m): (FieldRule | UnionRule)[] => {
    if (m.kind === "field") return [rule(m)];
    const union = unionOf.get(m);
    return union === undefined ? m.fields.map(rule) : [union];
  });
  // A union is written only once a member is set, and then in declaration order: its place here is moot.
  mutable.numberOrder = [...desc.fields]
    .sort((a, b) => a.number - b.number)
    .flatMap((f): (FieldRule | UnionRule)[] => {
      const union = f.oneof === undefined ? undefined : unionOf.get(f.oneof);
      if (union === undefined) return [rule(f)];
      return union.oneof.fields[0] === f ? [union] : [];
    });
  return plan;
}

function wktOf(desc: DescMessage): Plan["wkt"] {
  if (desc.file.proto.package !== "google.protobuf") return undefined;
  switch (desc.typeName) {
    case "google.protobuf.Struct":
      return "struct";
    case "google.protobuf.ListValue":
      return "list";
    case "google.protobuf.Value":
      return "value";
    default:
      throw new Error(`${desc.typeName}: the REST JSON engine does not take this well-known type`);
  }
}

function presenceOf(value: JsonPresence): Presence {
  switch (value) {
    case JsonPresence.NULL_WHEN_UNSET:
      return "null";
    case JsonPresence.OMIT_WHEN_EMPTY:
      return "omit";
    case JsonPresence.NULL_WHEN_EMPTY:
      return "emptyNull";
    default:
      return "default";
  }
}

const enums = new WeakMap<DescEnum, EnumRule>();

function enumRule(desc: DescEnum): EnumRule {
  let rule = enums.get(desc);
  if (rule !== undefined) return rule;
  if (!desc.open || desc.typeName === "google.protobuf.NullValue") {
    throw new Error(`${desc.typeName}: the REST JSON engine takes open enums only`);
  }
  const numbers = new Map<string, number>();
  for (const v of desc.values) numbers.set(v.name, v.number);
  rule = {
    desc,
    numbers,
    names: new Map(desc.values.map((v) => [v.number, v.name])),
    zero: desc.values[0]?.number ?? 0,
  };
  enums.set(desc, rule);
  return rule;
}

const longTypes: ReadonlySet<ScalarType> = new Set([
  ScalarType.INT64,
  ScalarType.UINT64,
  ScalarType.SINT64,
  ScalarType.FIXED64,
  ScalarType.SFIXED64,
]);

function scalarRule(field: DescField, scalar: ScalarType, longAsString: boolean): ValueRule {
  if (scalar === ScalarType.BYTES) {
    throw new Error(`${field.parent.typeName}.${field.name}: the REST JSON engine does not take bytes`);
  }
  return {
    kind: "scalar",
    scalar,
    long: longTypes.has(scalar) ? (longAsString ? "string" : "bigint") : undefined,
  };
}

function fieldRule(field: DescField): FieldRule {
  let value: ValueRule;
  let shape: FieldRule["shape"] = "single";
  let mapKey: ScalarType | undefined;
  switch (field.fieldKind) {
    case "scalar":
      value = scalarRule(field, field.scalar, field.longAsString);
      break;
    case "enum":
      value = { kind: "enum", enum: enumRule(field.enum) };
      break;
    case "message":
      value = { kind: "message", plan: planOf(field.message) };
      break;
    case "list":
      shape = "list";
      value =
        field.listKind === "scalar"
          ? scalarRule(field, field.scalar, field.longAsString)
          : field.listKind === "enum"
            ? { kind: "enum", enum: enumRule(field.enum) }
            : { kind: "message", plan: planOf(field.message) };
      break;
    case "map":
      shape = "map";
      mapKey = field.mapKey;
      if (field.mapKey !== ScalarType.STRING) {
        throw new Error(
          `${field.parent.typeName}.${field.name}: the REST JSON engine takes string map keys only`,
        );
      }
      value =
        field.mapKind === "scalar"
          ? scalarRule(field, field.scalar, false)
          : field.mapKind === "enum"
            ? { kind: "enum", enum: enumRule(field.enum) }
            : { kind: "message", plan: planOf(field.message) };
      break;
    default: {
      const _never: never = field;
      return _never;
    }
  }
  const inOneof = field.oneof !== undefined;
  const presence = presenceOf(getOption(field, json_presence));
  // Three JSON states need explicit presence on a string outside any oneof (a proto3 `optional string`,
  // whose synthetic oneof protobuf-es does not list), where `null` is neither unset nor another member.
  if (
    presence === "emptyNull" &&
    !(
      field.fieldKind === "scalar" &&
      field.scalar === ScalarType.STRING &&
      !inOneof &&
      field.presence !== FeatureSet_FieldPresence.IMPLICIT
    )
  ) {
    throw new Error(`${field.parent.typeName}.${field.name}: NULL_WHEN_EMPTY needs an optional string`);
  }
  return {
    field,
    key: field.name,
    alias: field.jsonName === field.name ? undefined : field.jsonName,
    localName: field.localName,
    shape,
    value,
    presence,
    implicit:
      shape === "single" &&
      value.kind !== "message" &&
      !inOneof &&
      field.presence === FeatureSet_FieldPresence.IMPLICIT,
    oneof: inOneof && !hasOption(field.oneof, json_union) ? field.oneof : undefined,
    mapKey,
  };
}

function unionRule(oneof: DescOneof, rules: ReadonlyMap<DescField, FieldRule>): UnionRule {
  const members = new Map<JsonKind, FieldRule>();
  for (const field of oneof.fields) {
    const kind = memberKind(field);
    const taken = members.get(kind);
    if (taken !== undefined) {
      throw new Error(
        `${oneof.parent.typeName}.${oneof.name}: json_union members ${taken.key} and ${field.name} both read a JSON ${kind}`,
      );
    }
    members.set(kind, rules.get(field) as FieldRule);
  }
  return {
    oneof,
    key: oneof.name,
    alias: oneof.localName === oneof.name ? undefined : oneof.localName,
    localName: oneof.localName,
    presence: presenceOf(getOption(oneof, json_union).presence),
    members,
    memberKeys: oneof.fields.flatMap((f) => (f.name === f.jsonName ? [f.name] : [f.name, f.jsonName])),
  };
}

/** The JSON type of a union member's REST JSON (members are never lists or maps). */
function memberKind(field: DescField): JsonKind {
  switch (field.fieldKind) {
    case "scalar":
      return scalarKind(field.scalar);
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

function scalarKind(scalar: ScalarType): JsonKind {
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

function listOf(desc: DescMessage, rules: ReadonlyMap<DescField, FieldRule>): Plan["list"] {
  const [field, ...rest] = desc.fields;
  if (field?.fieldKind !== "list" || rest.length > 0) {
    throw new Error(`${desc.typeName}: json_list needs exactly one field, a repeated one`);
  }
  const rule = rules.get(field) as FieldRule;
  const item: JsonKind =
    field.listKind === "message" ? "object" : field.listKind === "enum" ? "string" : scalarKind(field.scalar);
  return { rule, item };
}

function reachesShape(plan: Plan, seen: Set<Plan>): boolean {
  if (seen.has(plan)) return false;
  seen.add(plan);
  if (plan.unions.length > 0 || plan.list !== undefined) return true;
  return plan.fields.some((f) => f.value.kind === "message" && reachesShape(f.value.plan, seen));
}
