// A page calling api-key-server from another origin, with nothing but fetch: copy it into your app.
// The server must list this page's origin in API_KEY_SERVER_CORS_ORIGINS (see the README, "Web clients").

const $ = (id) => document.getElementById(id);
const status = $("status");
let running;

// What to do about each error, keyed by the message the server sends (the runbook's table).
const hints = {
  Unauthorized: "the token is missing, expired or not signed by a key the server knows",
  Forbidden: "the token's products claim does not include this product",
  "Product not found": "no such product in the server's configuration",
  "Model not supported": "pick a model from the product's list",
  "Rate limit exceeded": "wait and try again",
  "Upstream service error": "the provider failed; the server log says why (Upstream call failed)",
  "Upstream timeout": "the provider did not answer in time",
  "Service not ready": "the server is still loading its secrets; try again in a few seconds",
};

function show(text, isError = false) {
  status.textContent = text;
  status.className = isError ? "error" : "";
}

/** Shows a REST error body ({"error": {"code", "status", "message"}}) as "<status> <message>: <hint>". */
function showError(httpStatus, body, retryAfter) {
  const message = body?.error?.message ?? "Unexpected answer";
  let text = `${body?.error?.code ?? httpStatus} ${message}`;
  if (hints[message]) text += `: ${hints[message]}`;
  if (retryAfter) text += ` (Retry-After: ${retryAfter} s)`;
  show(text, true);
}

function showNetworkError(err) {
  if (err.name === "AbortError") return show("Stopped");
  // A refused CORS preflight and a server that is down look the same to a page: a TypeError.
  show(
    `Cannot reach the server: is it running, and is ${location.origin} in API_KEY_SERVER_CORS_ORIGINS?`,
    true,
  );
}

function request(path, init = {}) {
  const server = $("server").value.replace(/\/+$/, "");
  return fetch(`${server}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${$("token").value.trim()}`, ...init.headers },
  });
}

async function failed(res) {
  if (res.ok) return false;
  const body = await res.json().catch(() => undefined);
  showError(res.status, body, res.headers.get("retry-after"));
  return true;
}

async function loadModels() {
  const product = encodeURIComponent($("product").value.trim());
  show("Loading models…");
  try {
    const res = await request(`/v1/chat/${product}/models`);
    if (await failed(res)) return;
    const { data } = await res.json();
    $("model").replaceChildren(...data.map(({ id }) => new Option(id, id)));
    show(`${data.length} model${data.length === 1 ? "" : "s"}`);
  } catch (err) {
    showNetworkError(err);
  }
}

/** Streams a reply from POST /v1/chat/{product}:stream (Server-Sent Events) into #reply, token by token. */
async function send() {
  running?.abort();
  running = new AbortController();
  const product = encodeURIComponent($("product").value.trim());
  const reply = $("reply");
  reply.textContent = "";
  show("Streaming…");
  try {
    const res = await request(`/v1/chat/${product}:stream`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: $("model").value,
        messages: [{ role: "user", content: $("prompt").value }],
        stream: true,
      }),
      signal: running.signal,
    });
    if (await failed(res)) return;
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const bytes of res.body) {
      buffered += decoder.decode(bytes, { stream: true });
      let end;
      while ((end = buffered.indexOf("\n\n")) >= 0) {
        const event = parseEvent(buffered.slice(0, end));
        buffered = buffered.slice(end + 2);
        if (event.data === "[DONE]") continue;
        const json = JSON.parse(event.data);
        // A failure after the stream started arrives as an `error` event with the usual error body.
        if (event.type === "error") return showError(json.error?.code, json);
        reply.textContent += json.choices?.[0]?.delta?.content ?? "";
      }
    }
    show("Done");
  } catch (err) {
    showNetworkError(err);
  }
}

function parseEvent(text) {
  const event = { type: "message", data: "" };
  for (const line of text.split(/\r?\n/)) {
    if (line.startsWith("event:")) event.type = line.slice(6).trim();
    else if (line.startsWith("data:")) event.data += line.slice(5).trimStart();
  }
  return event;
}

$("load-models").addEventListener("click", loadModels);
$("send").addEventListener("click", send);
$("stop").addEventListener("click", () => running?.abort());
