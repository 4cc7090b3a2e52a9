import {
  getOption,
  ScalarType,
  type DescField,
  type DescMessage,
  type JsonObject,
  type JsonValue,
} from "@bufbuild/protobuf";
import type { MethodImplSpec, ServiceImplSpec } from "@connectrpc/connect";
import { http } from "../../../gen/google/api/annotations_pb.js";
import type { HttpRule } from "../../../gen/google/api/http_pb.js";
import { AppError } from "../../errors/index.js";
import { parsePathTemplate, type PathTemplate } from "./path-template.js";

/** One REST binding of one RPC, compiled from its google.api.http rule at start-up. */
export interface RestRoute {
  /** Upper-case HTTP method ("GET", "POST", or a custom verb's kind). */
  readonly httpMethod: string;
  readonly template: PathTemplate;
  /** The method's implementation, invoked in-process with the router's interceptors. */
  readonly spec: MethodImplSpec;
  /** What interceptors see as the call's URL: the method's RPC path, as for a Connect call. */
  readonly url: string;
  /** For each template variable, the field chain it sets. */
  readonly pathFields: readonly (readonly DescField[])[];
  /** `body: "*"` → "*"; `body: "field"` → that field; no body → undefined. */
  readonly body: "*" | DescField | undefined;
  /** `response_body: "field"`: the answer is that field of the response. */
  readonly responseBody: DescField | undefined;
  readonly serverStreaming: boolean;
}

/** Resolves a dotted field path on a message; every field but the last must be a singular message. */
function resolveFieldPath(
  message: DescMessage,
  path: readonly string[],
  byJsonName: boolean,
): DescField[] | undefined {
  const fields: DescField[] = [];
  let current: DescMessage | undefined = message;
  for (const name of path) {
    if (current === undefined) return undefined;
    const desc: DescMessage = current;
    const field = desc.fields.find((f) => f.name === name || (byJsonName && f.jsonName === name));
    if (field === undefined) return undefined;
    fields.push(field);
    current = field.fieldKind === "message" ? field.message : undefined;
  }
  return fields;
}

function isLeaf(field: DescField, allowList: boolean): boolean {
  if (field.fieldKind === "scalar" || field.fieldKind === "enum") return true;
  return allowList && field.fieldKind === "list" && field.listKind !== "message";
}

function rulePattern(rule: HttpRule): { method: string; path: string } | undefined {
  const p = rule.pattern;
  switch (p.case) {
    case "get":
    case "put":
    case "post":
    case "delete":
    case "patch":
      return { method: p.case.toUpperCase(), path: p.value };
    case "custom":
      return { method: p.value.kind.toUpperCase(), path: p.value.path };
    case undefined:
      return undefined;
    default: {
      const _never: never = p;
      return _never;
    }
  }
}

function compileRule(spec: MethodImplSpec, rule: HttpRule): RestRoute | undefined {
  const method = spec.method;
  const where = `google.api.http of ${method.parent.typeName}.${method.name}`;
  const pattern = rulePattern(rule);
  if (pattern === undefined) return undefined;
  if (method.methodKind !== "unary" && method.methodKind !== "server_streaming") {
    throw new Error(`${where}: only unary and server-streaming methods can have REST bindings`);
  }
  const template = parsePathTemplate(pattern.path);
  const pathFields = template.variables.map((v) => {
    const fields = resolveFieldPath(method.input, v.fieldPath, false);
    const leaf = fields?.[fields.length - 1];
    if (fields === undefined || leaf === undefined || !isLeaf(leaf, false)) {
      throw new Error(
        `${where}: path variable "${v.fieldPath.join(".")}" is not a scalar field of the request`,
      );
    }
    return fields;
  });
  let body: RestRoute["body"];
  if (rule.body === "*") body = "*";
  else if (rule.body !== "") {
    body = method.input.fields.find((f) => f.name === rule.body);
    if (body === undefined) throw new Error(`${where}: body "${rule.body}" is not a field of the request`);
  }
  let responseBody: DescField | undefined;
  if (rule.responseBody !== "") {
    responseBody = method.output.fields.find((f) => f.name === rule.responseBody);
    if (responseBody === undefined) {
      throw new Error(`${where}: response_body "${rule.responseBody}" is not a field of the response`);
    }
  }
  return {
    httpMethod: pattern.method,
    template,
    spec,
    url: `http://localhost/${method.parent.typeName}/${method.name}`,
    pathFields,
    body,
    responseBody,
    serverStreaming: method.methodKind === "server_streaming",
  };
}

/**
 * Compiles the REST routes of all methods of the services from their google.api.http options (main rule and
 * additional_bindings), most specific first: routes with a custom verb, then by literal segment count, then
 * in declaration order. Throws at start-up on an invalid rule.
 */
export function compileRoutes(services: readonly ServiceImplSpec[]): RestRoute[] {
  const routes: RestRoute[] = [];
  for (const service of services) {
    for (const spec of Object.values(service.methods)) {
      const rule = getOption(spec.method, http);
      for (const r of [rule, ...rule.additionalBindings]) {
        const route = compileRule(spec, r);
        if (route !== undefined) routes.push(route);
      }
    }
  }
  const score = (r: RestRoute): number =>
    (r.template.verb !== undefined ? 1000 : 0) + r.template.literalCount;
  return routes
    .map((route, order) => ({ route, order }))
    .sort((a, b) => score(b.route) - score(a.route) || a.order - b.order)
    .map((x) => x.route);
}

/** The JSON value of a path or query string for a scalar or enum field (values are checked by src/json/). */
function scalarJson(field: DescField, raw: string): JsonValue {
  if (field.enum !== undefined) {
    if (/^-?\d+$/.test(raw)) return Number(raw);
    if (field.enum.values.some((v) => v.name === raw)) return raw;
    throw new AppError("invalid_argument", { message: `Invalid value for field "${field.name}"` });
  }
  if (field.scalar === ScalarType.BOOL) {
    if (raw === "true") return true;
    if (raw === "false") return false;
    throw new AppError("invalid_argument", { message: `Invalid value for field "${field.name}"` });
  }
  return raw;
}

function childObject(parent: JsonObject, field: DescField): JsonObject {
  const existing = parent[field.name] ?? parent[field.jsonName];
  if (typeof existing === "object" && existing !== null && !Array.isArray(existing)) {
    if (parent[field.jsonName] === existing && field.jsonName !== field.name) {
      delete parent[field.jsonName];
      parent[field.name] = existing;
    }
    return existing;
  }
  const created: JsonObject = {};
  parent[field.name] = created;
  if (field.jsonName !== field.name) delete parent[field.jsonName];
  return created;
}

/** Sets a path variable into the request JSON; it overrides the same field from the body. */
export function setPathValue(target: JsonObject, fields: readonly DescField[], raw: string): void {
  let obj = target;
  for (let i = 0; i < fields.length - 1; i++) obj = childObject(obj, fields[i] as DescField);
  const leaf = fields[fields.length - 1] as DescField;
  if (leaf.jsonName !== leaf.name) delete obj[leaf.jsonName];
  obj[leaf.name] = scalarJson(leaf, raw);
}

/**
 * Applies query parameters to the request JSON: each key is a dotted field path (proto or JSON names) to a
 * scalar, enum or repeated scalar field; repeated keys fill a repeated field. Unknown or unsupported keys
 * and fields carried by the body give INVALID_ARGUMENT naming the parameter.
 */
export function applyQuery(route: RestRoute, target: JsonObject, query: URLSearchParams): void {
  for (const [key, raw] of query) {
    const fields = resolveFieldPath(route.spec.method.input, key.split("."), true);
    const leaf = fields?.[fields.length - 1];
    if (fields === undefined || leaf === undefined || !isLeaf(leaf, true)) {
      throw new AppError("invalid_argument", { message: `Unknown query parameter "${key}"` });
    }
    if (route.body !== undefined && route.body !== "*" && fields[0] === route.body) {
      throw new AppError("invalid_argument", { message: `Query parameter "${key}" is part of the body` });
    }
    let obj = target;
    for (let i = 0; i < fields.length - 1; i++) obj = childObject(obj, fields[i] as DescField);
    const value = scalarJson(leaf, raw);
    if (leaf.fieldKind === "list") {
      const list = obj[leaf.name];
      if (Array.isArray(list)) list.push(value);
      else obj[leaf.name] = [value];
    } else {
      if (obj[leaf.name] !== undefined) {
        throw new AppError("invalid_argument", { message: `Query parameter "${key}" is repeated` });
      }
      obj[leaf.name] = value;
    }
  }
}
