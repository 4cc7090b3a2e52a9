import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { JsonKind } from "./plan.js";

// Small facts about JSON values the reader, the error finder and the writer share.

/** protobuf's JSON reader's recursion limit: messages, Struct values and list values nest this deep at most. */
export const maxDepth = 100;

export function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A value's JSON type, as a `json_union` member or a `json_list` item is chosen by it. */
export function kindOf(value: JsonValue): JsonKind | "null" {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  const type = typeof value;
  return type === "string" || type === "number" || type === "boolean" ? type : "object";
}
