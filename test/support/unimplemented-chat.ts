import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { ChatService } from "../../gen/apikeyserver/v1/chat_pb.js";

/**
 * A ChatService whose RPCs all answer UNIMPLEMENTED: the transport-level tests register it so the chat
 * routes exist (for reflection and clients) without the real service's dependencies.
 */
export const unimplementedChatService: ServiceImpl<typeof ChatService> = {
  createChatCompletion() {
    throw new ConnectError("CreateChatCompletion is not implemented", Code.Unimplemented);
  },
  // A generator that throws before its first yield: a streaming RPC failing with UNIMPLEMENTED.
  // eslint-disable-next-line require-yield
  async *streamChatCompletion() {
    await Promise.resolve();
    throw new ConnectError("StreamChatCompletion is not implemented", Code.Unimplemented);
  },
  listModels() {
    throw new ConnectError("ListModels is not implemented", Code.Unimplemented);
  },
};
