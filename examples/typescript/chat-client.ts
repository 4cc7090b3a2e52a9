// A TypeScript backend calling api-key-server over gRPC with the generated Connect client: one chat
// completion, then a streamed one. See examples/README.md for how to run it; the tests run it against the
// echo provider (test/examples/clients.test.ts).
//
//   TOKEN=... node chat-client.ts [base URL, default http://localhost:8000] [product, default product-dev]
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ChatService } from "../../gen/apikeyserver/v1/chat_pb.js";

const [baseUrl = "http://localhost:8000", product = "product-dev", model = "echo-1"] = process.argv.slice(2);
const token = process.env["TOKEN"];
if (token === undefined || token === "") {
  console.error("set TOKEN to a caller JWT (npm run -s cli -- token --product product-dev --sub me)");
  process.exit(2);
}

// gRPC over HTTP/2 cleartext (h2c); the server speaks it on its one port.
const client = createClient(ChatService, createGrpcTransport({ baseUrl }));
const headers = { authorization: `Bearer ${token}` };

async function main(): Promise<void> {
  // `content` is a oneof: plain text here, or `{ case: "parts", value: { parts: [...] } }` for text and images.
  const answer = await client.createChatCompletion(
    {
      product,
      model,
      messages: [
        { role: "system", content: { case: "text", value: "Answer briefly." } },
        { role: "user", content: { case: "text", value: "hello" } },
      ],
      stop: { case: "stopSequences", value: { sequences: ["\n\n"] } },
    },
    { headers, timeoutMs: 10_000 },
  );
  console.log(`unary: ${answer.choices[0]?.message?.content ?? ""}`);

  let streamed = "";
  let totalTokens = 0;
  for await (const chunk of client.streamChatCompletion(
    {
      product,
      model,
      messages: [
        {
          role: "user",
          content: { case: "parts", value: { parts: [{ type: "text", text: "hello from a stream" }] } },
        },
      ],
      streamOptions: { includeUsage: true },
    },
    { headers, timeoutMs: 10_000 },
  )) {
    streamed += chunk.choices[0]?.delta?.content ?? "";
    if (chunk.usage !== undefined) totalTokens = chunk.usage.totalTokens;
  }
  console.log(`stream: ${streamed}`);
  console.log(`stream tokens: ${totalTokens}`);
}

try {
  await main();
} catch (err) {
  const e = ConnectError.from(err);
  console.error(`error: ${Code[e.code]}: ${e.rawMessage}`);
  process.exit(1);
}
