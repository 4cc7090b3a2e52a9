"""A Python backend calling api-key-server over gRPC with grpcio: one chat completion, then a streamed one.

The message classes come from protoc's Python generator (Debian: protobuf-compiler); there is no grpc
Python plugin here, so the stub below is written by hand with channel.unary_unary / unary_stream, which is
all a generated stub does. See examples/README.md for how to generate and run; the tests run it against
the echo provider (test/examples/clients.test.ts).

    TOKEN=... PYTHONPATH=<generated> python3 chat_client.py [target, default localhost:8000] [product]
"""

import os
import sys

import grpc

from apikeyserver.v1 import chat_pb2

SERVICE = "/apikeyserver.v1.ChatService/"


class ChatServiceStub:
    """The stub grpcio's plugin would generate for apikeyserver.v1.ChatService."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.CreateChatCompletion = channel.unary_unary(
            SERVICE + "CreateChatCompletion",
            request_serializer=chat_pb2.ChatCompletionRequest.SerializeToString,
            response_deserializer=chat_pb2.ChatCompletion.FromString,
        )
        self.StreamChatCompletion = channel.unary_stream(
            SERVICE + "StreamChatCompletion",
            request_serializer=chat_pb2.ChatCompletionRequest.SerializeToString,
            response_deserializer=chat_pb2.ChatCompletionChunk.FromString,
        )
        self.ListModels = channel.unary_unary(
            SERVICE + "ListModels",
            request_serializer=chat_pb2.ListModelsRequest.SerializeToString,
            response_deserializer=chat_pb2.ListModelsResponse.FromString,
        )


def main() -> int:
    target = sys.argv[1] if len(sys.argv) > 1 else "localhost:8000"
    product = sys.argv[2] if len(sys.argv) > 2 else "product-dev"
    model = sys.argv[3] if len(sys.argv) > 3 else "echo-1"
    token = os.environ.get("TOKEN", "")
    if not token:
        print("set TOKEN to a caller JWT (npm run -s cli -- token --product product-dev --sub me)", file=sys.stderr)
        return 2
    metadata = [("authorization", f"Bearer {token}")]

    # gRPC over HTTP/2 cleartext (h2c); the server speaks it on its one port.
    with grpc.insecure_channel(target) as channel:
        stub = ChatServiceStub(channel)
        try:
            # `content` is a oneof: `text=` for a string, or `parts=ContentParts(parts=[...])`.
            request = chat_pb2.ChatCompletionRequest(
                product=product,
                model=model,
                messages=[
                    chat_pb2.ChatMessage(role="system", text="Answer briefly."),
                    chat_pb2.ChatMessage(role="user", text="hello"),
                ],
                stop_sequences=chat_pb2.StopSequences(sequences=["\n\n"]),
            )
            answer = stub.CreateChatCompletion(request, metadata=metadata, timeout=10)
            print(f"unary: {answer.choices[0].message.content}")

            parts = chat_pb2.ContentParts(parts=[chat_pb2.ContentPart(type="text", text="hello from a stream")])
            request = chat_pb2.ChatCompletionRequest(
                product=product,
                model=model,
                messages=[chat_pb2.ChatMessage(role="user", parts=parts)],
                stream_options=chat_pb2.StreamOptions(include_usage=True),
            )
            streamed, total_tokens = "", 0
            for chunk in stub.StreamChatCompletion(request, metadata=metadata, timeout=10):
                if chunk.choices:
                    streamed += chunk.choices[0].delta.content
                if chunk.HasField("usage"):
                    total_tokens = chunk.usage.total_tokens
            print(f"stream: {streamed}")
            print(f"stream tokens: {total_tokens}")
        except grpc.RpcError as err:
            print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
