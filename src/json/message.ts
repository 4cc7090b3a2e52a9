import {
  create,
  type DescMessage,
  type JsonObject,
  type JsonValue,
  type MessageShape,
} from "@bufbuild/protobuf";
import { ListValueSchema, ValueSchema, type ListValue, type Value } from "@bufbuild/protobuf/wkt";
import { isObject, kindOf } from "./json-value.js";
import { planOf, type FieldRule, type JsonKind, type Plan, type ValueRule } from "./plan.js";
import { checkRequest, readAnswer } from "./read.js";
import { enumOf, scalarOf } from "./scalar.js";
import { setOwn } from "./write.js";

// A protobuf message from REST JSON, for the calls whose implementation takes one (a REST call of a
// non-chat RPC, the OpenAI models routes): the reader checks the JSON (read.ts), this builds the message
// from it without changing it.

type Fields = Record<string, unknown>;

function copyJson(value: JsonValue): JsonValue {
  if (typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) return value.map(copyJson);
  const out: JsonObject = {};
  for (const key of Object.keys(value)) setOwn(out, key, copyJson(value[key] as JsonValue));
  return out;
}

function valueMessage(json: JsonValue): Value {
  if (json === null) return create(ValueSchema, { kind: { case: "nullValue", value: 0 } });
  switch (typeof json) {
    case "number":
      return create(ValueSchema, { kind: { case: "numberValue", value: json } });
    case "string":
      return create(ValueSchema, { kind: { case: "stringValue", value: json } });
    case "boolean":
      return create(ValueSchema, { kind: { case: "boolValue", value: json } });
  }
  if (Array.isArray(json))
    return create(ValueSchema, { kind: { case: "listValue", value: listMessage(json) } });
  const fields: Record<string, Value> = {};
  for (const key of Object.keys(json)) fields[key] = valueMessage(json[key] as JsonValue);
  return create(ValueSchema, { kind: { case: "structValue", value: { fields } } });
}

function listMessage(json: readonly JsonValue[]): ListValue {
  return create(ListValueSchema, { values: json.map(valueMessage) });
}

/** The value a message holds for one valid JSON value (a singular value, a list item or a map value). */
function localOf(rule: ValueRule, json: JsonValue): unknown {
  switch (rule.kind) {
    case "scalar": {
      const value = scalarOf(rule.scalar, json);
      return rule.long === "string" ? String(value) : value;
    }
    case "enum":
      return enumOf(rule.enum, json);
    case "message":
      switch (rule.plan.wkt) {
        case undefined:
          return build(rule.plan, json);
        case "struct":
          return copyJson(json);
        case "value":
          return valueMessage(json);
        case "list":
          return listMessage(json as JsonValue[]);
      }
  }
}

function setField(rule: FieldRule, message: Fields, raw: JsonValue): void {
  let json = raw;
  if (json === null) {
    // JSON_PRESENCE_NULL_WHEN_EMPTY: `null` is the field set to "" (a stream's first delta's refusal).
    if (rule.presence === "emptyNull") json = "";
    else if (rule.shape !== "single" || rule.value.kind !== "message" || rule.value.plan.wkt !== "value")
      return;
  }
  switch (rule.shape) {
    case "single": {
      const value = localOf(rule.value, json);
      if (rule.oneof !== undefined) message[rule.oneof.localName] = { case: rule.localName, value };
      else message[rule.localName] = value;
      return;
    }
    case "list":
      (message[rule.localName] as unknown[]).push(
        ...(json as JsonValue[]).map((item) => localOf(rule.value, item)),
      );
      return;
    case "map": {
      const map = message[rule.localName] as Fields;
      const entries = json as JsonObject;
      for (const key of Object.keys(entries)) {
        const value = localOf(rule.value, entries[key] as JsonValue);
        if (key === "__proto__")
          Object.defineProperty(map, key, { value, enumerable: true, writable: true, configurable: true });
        else map[key] = value;
      }
      return;
    }
  }
}

function build(plan: Plan, json: JsonValue): unknown {
  const message = create(plan.desc) as unknown as Fields;
  if (plan.list !== undefined) {
    setField(plan.list.rule, message, json);
    return message;
  }
  if (!isObject(json)) return message;
  for (const key of Object.keys(json)) {
    const entry = plan.keys.get(key);
    const value = json[key] as JsonValue;
    if (entry?.kind === "field") setField(entry.rule, message, value);
    else if (entry?.kind === "union" && value !== null) {
      const member = entry.rule.members.get(kindOf(value) as JsonKind) as FieldRule;
      message[entry.rule.localName] = { case: member.localName, value: localOf(member.value, value) };
    }
  }
  return message;
}

/**
 * Builds a message from REST JSON (the form toRestJson writes), leaving the JSON as it is. Accepts proto
 * and JSON (lowerCamelCase) field names; a `json_union` oneof is read from the oneof's name, the member
 * chosen by the value's JSON type. Throws AppError `invalid_argument` as the reader does (read.ts).
 */
export function fromRestJson<Desc extends DescMessage>(schema: Desc, json: JsonValue): MessageShape<Desc> {
  const plan = planOf(schema);
  checkRequest(plan, json);
  return build(plan, json) as MessageShape<Desc>;
}

/**
 * Builds a message from a provider's JSON answer as protobuf's reader would with `ignoreUnknownFields`
 * (keys the contract does not know are dropped); undefined when it does not fit. Normalizes the JSON in
 * place on the way (read.ts, readAnswer).
 */
export function fromAnswerJson<Desc extends DescMessage>(
  schema: Desc,
  json: JsonObject,
): MessageShape<Desc> | undefined {
  const normal = readAnswer(schema, json);
  return normal === undefined ? undefined : (build(planOf(schema), normal) as MessageShape<Desc>);
}
