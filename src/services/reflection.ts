import type { ConnectRouter } from "@connectrpc/connect";
import { Code } from "@connectrpc/connect";
import {
  create,
  fromBinary,
  toBinary,
  type DescEnum,
  type DescExtension,
  type DescFile,
  type DescMessage,
  type MessageInitShape,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

type Response = MessageInitShape<typeof v1.ServerReflectionResponseSchema>;
/** The fields every answer echoes from its request. */
interface Echo {
  readonly validHost: string;
  readonly originalRequest: v1.ServerReflectionRequest;
}

/** Everything reflection answers from, built once from the router's services. */
interface Index {
  readonly services: readonly string[];
  /** Serialized FileDescriptorProto by file name, for every file reachable from a served service. */
  readonly files: ReadonlyMap<string, { readonly desc: DescFile; readonly bytes: Uint8Array }>;
  /** File declaring each fully-qualified symbol (messages, enums, services, methods, extensions, fields). */
  readonly symbols: ReadonlyMap<string, DescFile>;
  /** Known extensions by extendee type name. */
  readonly extensions: ReadonlyMap<string, readonly DescExtension[]>;
}

/**
 * Registers `grpc.reflection.v1.ServerReflection` and `grpc.reflection.v1alpha.ServerReflection` (one
 * implementation; the two are wire-identical) so `grpcurl` and `buf curl` work without proto files.
 *
 * Answers from the services registered on `router` (read at the first reflection call, so register this
 * before or after the others). File answers carry the file and all its transitive dependencies, well-known
 * types included. Failures (unknown file, symbol or extension; empty request) go in `error_response` with a
 * gRPC code (NOT_FOUND, INVALID_ARGUMENT) and the stream stays open, as the protocol says. Reflection is a
 * bidi stream, so it works over HTTP/2 only.
 */
export function registerReflection(router: ConnectRouter): void {
  let index: Index | undefined;
  const getIndex = () => (index ??= buildIndex(router));

  router.service(v1.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) yield answer(getIndex(), req);
    },
  });
  router.service(v1alpha.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const alphaReq of requests) {
        const req = fromBinary(
          v1.ServerReflectionRequestSchema,
          toBinary(v1alpha.ServerReflectionRequestSchema, alphaReq),
        );
        const res = answer(getIndex(), req);
        yield fromBinary(
          v1alpha.ServerReflectionResponseSchema,
          toBinary(v1.ServerReflectionResponseSchema, create(v1.ServerReflectionResponseSchema, res)),
        );
      }
    },
  });
}

function answer(index: Index, req: v1.ServerReflectionRequest): Response {
  const base: Echo = { validHost: req.host, originalRequest: req };
  const request = req.messageRequest;
  switch (request.case) {
    case "listServices":
      return {
        ...base,
        messageResponse: {
          case: "listServicesResponse",
          value: { service: index.services.map((name) => ({ name })) },
        },
      };
    case "fileByFilename": {
      const file = index.files.get(request.value);
      if (!file) return error(base, Code.NotFound, `file not found: ${request.value}`);
      return files(base, index, file.desc);
    }
    case "fileContainingSymbol": {
      const file = index.symbols.get(stripDot(request.value));
      if (!file) return error(base, Code.NotFound, `symbol not found: ${request.value}`);
      return files(base, index, file);
    }
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = request.value;
      const ext = index.extensions.get(stripDot(containingType))?.find((e) => e.number === extensionNumber);
      if (!ext) {
        return error(base, Code.NotFound, `extension not found: ${containingType} ${extensionNumber}`);
      }
      return files(base, index, ext.file);
    }
    case "allExtensionNumbersOfType": {
      const typeName = stripDot(request.value);
      if (!index.symbols.has(typeName)) return error(base, Code.NotFound, `type not found: ${request.value}`);
      return {
        ...base,
        messageResponse: {
          case: "allExtensionNumbersResponse",
          value: {
            baseTypeName: typeName,
            extensionNumber: (index.extensions.get(typeName) ?? []).map((e) => e.number),
          },
        },
      };
    }
    case undefined:
      return error(base, Code.InvalidArgument, "empty reflection request");
    default: {
      const _never: never = request;
      return _never;
    }
  }
}

/** The file first, then every transitive dependency once (clients build their pool from the set). */
function files(base: Echo, index: Index, file: DescFile): Response {
  const out: Uint8Array[] = [];
  for (const f of closure([file])) {
    const entry = index.files.get(f.proto.name);
    out.push(entry ? entry.bytes : toBinary(FileDescriptorProtoSchema, f.proto));
  }
  return {
    ...base,
    messageResponse: { case: "fileDescriptorResponse", value: { fileDescriptorProto: out } },
  };
}

function error(base: Echo, code: Code, message: string): Response {
  return {
    ...base,
    messageResponse: { case: "errorResponse", value: { errorCode: code, errorMessage: message } },
  };
}

function stripDot(name: string): string {
  return name.startsWith(".") ? name.slice(1) : name;
}

function closure(roots: readonly DescFile[]): DescFile[] {
  const seen = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (seen.has(f.proto.name)) return;
    seen.set(f.proto.name, f);
    for (const dep of f.dependencies) visit(dep);
  };
  for (const root of roots) visit(root);
  return [...seen.values()];
}

function buildIndex(router: ConnectRouter): Index {
  const services = [...new Set(router.handlers.map((h) => h.service.typeName))].sort();
  const roots = [...new Set(router.handlers.map((h) => h.service.file))];
  const files = new Map<string, { desc: DescFile; bytes: Uint8Array }>();
  const symbols = new Map<string, DescFile>();
  const extensions = new Map<string, DescExtension[]>();

  const addExtension = (ext: DescExtension) => {
    symbols.set(ext.typeName, ext.file);
    const list = extensions.get(ext.extendee.typeName) ?? [];
    list.push(ext);
    extensions.set(ext.extendee.typeName, list);
  };
  const addEnum = (e: DescEnum) => symbols.set(e.typeName, e.file);
  const addMessage = (m: DescMessage) => {
    symbols.set(m.typeName, m.file);
    for (const field of m.fields) symbols.set(`${m.typeName}.${field.name}`, m.file);
    for (const oneof of m.oneofs) symbols.set(`${m.typeName}.${oneof.name}`, m.file);
    // Map entry types are in the descriptor but not among protobuf-es's nestedMessages.
    for (const nested of m.proto.nestedType) symbols.set(`${m.typeName}.${nested.name}`, m.file);
    m.nestedMessages.forEach(addMessage);
    m.nestedEnums.forEach(addEnum);
    m.nestedExtensions.forEach(addExtension);
  };

  for (const file of closure(roots)) {
    files.set(file.proto.name, { desc: file, bytes: toBinary(FileDescriptorProtoSchema, file.proto) });
    file.messages.forEach(addMessage);
    file.enums.forEach(addEnum);
    file.extensions.forEach(addExtension);
    for (const service of file.services) {
      symbols.set(service.typeName, file);
      for (const method of service.methods) symbols.set(`${service.typeName}.${method.name}`, file);
    }
  }
  return { services, files, symbols, extensions };
}
