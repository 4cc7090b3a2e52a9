/**
 * The allowed directions of src/ (docs/architecture.md, "Layout and dependencies"), checked by
 * `npm run depcheck` in .ci/run. The request path read top-down is the layer list: a layer may use the
 * layers below it, never one above. The kernel (errors, lib, log, compat and the per-request record
 * src/edge/exchange.ts with access-record.ts and request-id.ts) is below everything and imports nothing above it.
 */
const kernel = "^src/(errors|lib|log|compat)/|^src/edge/(exchange|access-record|request-id)\\.ts$";

/** A rule: nothing in `from` may import anything in `to`. */
function forbid(name, comment, from, to) {
  return { name, comment, severity: "error", from: { path: from }, to: { path: to, pathNot: kernel } };
}

module.exports = {
  forbidden: [
    {
      name: "no-circular",
      comment: "No import cycle anywhere in src/ (type-only imports included).",
      severity: "error",
      from: { path: "^src/" },
      to: { circular: true },
    },
    {
      name: "kernel-imports-kernel",
      comment: "errors, lib, log, compat and the exchange import nothing from the app above them.",
      severity: "error",
      from: { path: kernel },
      to: { path: "^src/", pathNot: `${kernel}|^src/(secrets/types|upstream/types)\\.ts$` },
    },
    forbid(
      "transport-knows-no-request-layer",
      "The one-port server knows nothing of the edge, protocols, calls or services.",
      "^src/transport/",
      "^src/(edge|protocols|call|services|chat|json|auth|limits|upstream|secrets|metrics|config)/",
    ),
    forbid(
      "edge-knows-no-protocol",
      "Edge entries know no protocol, call, service or chat rule.",
      "^src/edge/",
      "^src/(transport|protocols|call|services|chat|json|auth|limits|upstream)/",
    ),
    {
      name: "codec-knows-no-other-codec",
      comment:
        "A protocol codec (src/protocols/<name>/) imports no other codec; shared pieces sit in src/protocols/*.ts.",
      severity: "error",
      from: { path: "^src/protocols/([^/]+)/" },
      to: { path: "^src/protocols/[^/]+/", pathNot: "^src/protocols/$1/" },
    },
    forbid(
      "call-knows-no-protocol",
      "The call pipeline knows no protocol, service or surface: codecs plug into it.",
      "^src/call/",
      "^src/(transport|edge|protocols|services|chat|json)/",
    ),
    forbid(
      "services-know-no-protocol",
      "Services turn messages into domain calls; they know no protocol or transport.",
      "^src/services/",
      "^src/(transport|edge|protocols|call)/",
    ),
    forbid(
      "chat-knows-no-protocol",
      "The chat core knows no protocol, service form, call pipeline or transport.",
      "^src/chat/",
      "^src/(transport|edge|protocols|call|services|json)/",
    ),
    forbid(
      "rules-know-no-request-path",
      "Auth, limits, usage, upstream, secrets, config and metrics know nothing of the request path above them.",
      "^src/(auth|limits|usage|upstream|secrets|config)/",
      "^src/(transport|edge|protocols|call|services|chat|json|metrics)/",
    ),
    forbid(
      "json-is-a-leaf",
      "The JSON engine is used by the JSON surfaces and the services; it uses none of them.",
      "^src/json/",
      "^src/(transport|edge|protocols|call|services|chat|auth|limits|upstream|metrics)/",
    ),
  ],
  options: {
    tsConfig: { fileName: "tsconfig.json" },
    tsPreCompilationDeps: true,
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^(gen|node_modules)/" },
  },
};
