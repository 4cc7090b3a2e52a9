import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { ChatService } from "../../gen/apikeyserver/v1/chat_pb.js";

/**
 * A placeholder ChatService whose RPCs all answer UNIMPLEMENTED, so the routes exist (for reflection,
 * clients and tests) before the real service is wired in main.ts, which replaces it.
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
