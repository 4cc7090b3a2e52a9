import type { DescMethod } from "@bufbuild/protobuf";
import { createServiceImplSpec, type ServiceImpl } from "@connectrpc/connect";
import { ChatService } from "../../gen/apikeyserver/v1/chat_pb.js";
import type { MethodSpec } from "../call/pipeline.js";

/** One method as the HTTP surfaces run it on the pipeline: its handler, path and access-line name. */
export interface ChatMethod {
  readonly spec: MethodSpec;
  readonly url: string;
  readonly rpc: string;
}

/**
 * `method` of a service implementation (`createServiceImplSpec(...).methods`), as the HTTP surfaces call it
 * in-process; `surface` names the caller in the wiring error of a missing method.
 */
export function inProcessMethod(
  methods: Readonly<Record<string, MethodSpec>>,
  method: DescMethod,
  surface: string,
): ChatMethod {
  const spec = methods[method.localName];
  if (spec === undefined) throw new Error(`${surface}: ${method.parent.name} has no ${method.name}`);
  const rpc = `${method.parent.typeName}/${method.name}`;
  return { spec, url: `/${rpc}`, rpc };
}

/**
 * The ChatService methods the OpenAI and Anthropic surfaces call in-process (the implementation the router
 * serves), built once at start-up; `surface` names the caller in the wiring error of a missing method.
 */
export function chatMethods(
  surface: string,
  impl: ServiceImpl<typeof ChatService>,
): { readonly unary: ChatMethod; readonly stream: ChatMethod; readonly models: ChatMethod } {
  const { methods } = createServiceImplSpec<typeof ChatService>(ChatService, impl);
  const specOf = (method: DescMethod) => inProcessMethod(methods, method, surface);
  return {
    unary: specOf(ChatService.method.createChatCompletion),
    stream: specOf(ChatService.method.streamChatCompletion),
    models: specOf(ChatService.method.listModels),
  };
}
