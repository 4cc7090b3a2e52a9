import type { DescMethod } from "@bufbuild/protobuf";
import { createServiceImplSpec, type ServiceImpl } from "@connectrpc/connect";
import { ChatService } from "../../gen/apikeyserver/v1/chat_pb.js";

/** One ChatService method as the HTTP surfaces run it on the pipeline: its handler, path and access-line name. */
export interface ChatMethod {
  readonly spec: ReturnType<typeof createServiceImplSpec<typeof ChatService>>["methods"][string];
  readonly url: string;
  readonly rpc: string;
}

/**
 * The ChatService methods the OpenAI and Anthropic surfaces call in-process (the implementation the router
 * serves), built once at start-up; `surface` names the caller in the wiring error of a missing method.
 */
export function chatMethods(
  surface: string,
  impl: ServiceImpl<typeof ChatService>,
): { readonly unary: ChatMethod; readonly stream: ChatMethod; readonly models: ChatMethod } {
  const chat = createServiceImplSpec<typeof ChatService>(ChatService, impl);
  const specOf = (method: DescMethod): ChatMethod => {
    const spec = chat.methods[method.localName];
    if (spec === undefined) throw new Error(`${surface}: chat has no ${method.name}`);
    return {
      spec,
      url: `/${method.parent.typeName}/${method.name}`,
      rpc: `${method.parent.typeName}/${method.name}`,
    };
  };
  return {
    unary: specOf(ChatService.method.createChatCompletion),
    stream: specOf(ChatService.method.streamChatCompletion),
    models: specOf(ChatService.method.listModels),
  };
}
