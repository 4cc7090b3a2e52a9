import type { Message } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextValues,
  type HandlerContext,
  type Interceptor,
  type ServiceImplSpec,
} from "@connectrpc/connect";
import type { PrecheckRequest } from "../auth/index.js";
import { exchangeKey, type Exchange } from "../edge/exchange.js";
import { AppError, scrubSecrets } from "../errors/index.js";
import { checkBinaryValues, checkJsonValues } from "../lib/message-limits.js";
import { createCallSignals, type CallSignals } from "./call-registry.js";
import type { Logger } from "../log/index.js";
import { failCall } from "./wire-error.js";
import { createInProcessCalls, type CallInit, type InProcessCall } from "./in-process-call.js";
import { RequestBodyEnded } from "./read-body.js";

export type MethodSpec = ServiceImplSpec["methods"][string];

/**
 * What a call runs once decoded: the request message for the implementation registered on the router, or
 * a request of the codec's own form with the implementation that takes it (the JSON chat of the JSON
 * surfaces, src/services/chat-json.ts), which the interceptors see in the request message's place.
 */
export type Decoded =
  | {
      readonly request: Message;
      readonly unary?: undefined;
      readonly stream?: undefined;
      /** The method called, when the codec learns it from the body (the wire's by default). */
      readonly spec?: MethodSpec;
    }
  | {
      readonly request: unknown;
      readonly unary: (request: never, context: HandlerContext) => Promise<unknown>;
      readonly stream?: undefined;
      /** The method called, when the codec learns it from the body (the wire's by default). */
      readonly spec?: MethodSpec;
    }
  | {
      readonly request: unknown;
      readonly stream: (request: never, context: HandlerContext) => AsyncIterable<unknown>;
      readonly unary?: undefined;
      readonly spec?: MethodSpec;
    };

/**
 * One call as a protocol codec hands it to the pipeline: which method, and everything that is the
 * protocol's own — framing, headers, which bytes are signed, how an answer and an error are written
 * (docs/architecture.md, "The call pipeline"). Nothing of the order of the steps is the codec's.
 */
export interface CallWire {
  /** Names the codec in the log line of its own failures ("REST transcoder failure"). */
  readonly name: string;
  readonly spec: MethodSpec;
  /** The handler context's protocol, URL, headers and the caller's deadline (already parsed). */
  readonly init: CallInit;
  /**
   * A refusal the protocol makes before any byte of the body is read (a deadline over the maximum, an
   * unsupported request compression), thrown as the call's first step; undefined when none.
   */
  readonly refusal?: ConnectError | undefined;
  /** Reads the request body, size-limited (the protocol's framing and its errors). */
  read(): Promise<Uint8Array>;
  /** The request line an HMAC signature covers (docs/auth.md). */
  readonly signed: PrecheckRequest["signed"];
  /**
   * From what `read` gave: the bytes the signature covers and the decode limits count (a message as
   * encoded, uncompressed); undefined when the protocol has none to give (the call is then refused by
   * auth for an HMAC caller).
   */
  message(body: Uint8Array): Promise<Uint8Array | undefined> | Uint8Array | undefined;
  /**
   * How the message bytes are encoded, for the decode limits; `raw` for a codec that never decodes the
   * whole body on the event loop and bounds what it reads itself (the Anthropic surface reads a few
   * top-level keys of bodies up to 32 MiB, src/protocols/anthropic/top-level.ts).
   */
  readonly format: "json" | "binary" | "raw";
  /**
   * Decodes the (authenticated, limit-checked) message bytes; a promise when the codec reads a large body
   * in slices between turns of the event loop (src/protocols/anthropic/top-level.ts).
   */
  decode(bytes: Uint8Array): Decoded | Promise<Decoded>;
  /** Writes a unary answer. May throw an AppError about the answer (written as the call's error then). */
  unary(call: InProcessCall, answer: unknown): Promise<void> | void;
  /**
   * Writes a server stream: `messages` throws wire errors (already recorded); an error before the first
   * message is the codec's to write as an error answer or inside the stream, as its protocol does.
   */
  stream(call: InProcessCall, messages: AsyncIterator<unknown>): Promise<void>;
  /**
   * Writes the failure of the call: as an error answer when nothing was written yet, otherwise as the end
   * of what was started (an SSE `event: error`, a gRPC trailer) or by destroying the response.
   */
  error(call: InProcessCall, err: ConnectError): Promise<void> | void;
}

export interface CallPipelineOptions {
  /** The interceptors, outermost first (their order is written once, in src/app.ts). */
  readonly interceptors: readonly Interceptor[];
  /** Aborting it aborts the context signal of every running call (the end of the shutdown grace). */
  readonly shutdownSignal?: AbortSignal | undefined;
  /**
   * The registry of running calls that the shutdown signal aborts together (src/app.ts creates the one
   * of the server); by default one of its own, linked to `shutdownSignal`.
   */
  readonly registry?: CallSignals;
  /**
   * Auth's precheck (`Auth.precheck`): over the raw request, after the size-limited read and before any
   * decode. None in tests of a codec alone.
   */
  readonly precheck?: ((request: PrecheckRequest) => Promise<void>) | undefined;
  /** For failures of a codec itself (bugs, never a caller's error): logged once, scrubbed. */
  readonly logger: Logger;
}

export interface CallPipeline {
  /**
   * Runs one call in the pipeline's order (docs/architecture.md, "The call pipeline"): open (registered
   * for shutdown and cancel-on-disconnect, with its deadline) → the codec's refusal → body read → auth
   * precheck over the signed bytes → decode limits → decode → interceptors → service → encode and write.
   * Never throws: every failure is answered in the codec's form, or the response destroyed when nobody is
   * left to answer.
   */
  run(exchange: Exchange, wire: CallWire): Promise<void>;
  /**
   * Answers a request refused before it named a method (an unknown route, a method not allowed): the
   * wire error is recorded on the exchange like any call's, `write` puts it on the wire.
   */
  refuse(exchange: Exchange, thrown: unknown, write: (err: ConnectError) => void): void;
}

/** The pipeline every call of every codec passes (docs/architecture.md, "The call pipeline"). */
export function createCallPipeline(options: CallPipelineOptions): CallPipeline {
  const { precheck, logger } = options;
  const calls = createInProcessCalls({
    interceptors: options.interceptors,
    registry: options.registry ?? createCallSignals(options.shutdownSignal),
  });

  async function serve(exchange: Exchange, wire: CallWire, call: InProcessCall): Promise<void> {
    const { spec } = wire;
    let decoded: Decoded;
    try {
      if (wire.refusal !== undefined) throw wire.refusal;
      const body = await wire.read();
      let bytes: Promise<Uint8Array | undefined> | Uint8Array | undefined;
      const message = () => (bytes ??= wire.message(body));
      // Read (size-limited) but not decoded: authentication, an HMAC signature over the bytes as signed
      // included, comes first, so no unauthenticated request costs a decode.
      await precheck?.({
        service: spec.method.parent.typeName,
        method: spec.method.name,
        headers: call.context.requestHeader,
        rawHeaders: exchange.req.rawHeaders,
        exchange,
        signed: wire.signed,
        body: message,
      });
      const raw = await message();
      if (raw === undefined) throw new ConnectError("missing request message", Code.InvalidArgument);
      // Authenticated: the decode is bounded (src/lib/message-limits.ts) before it starts.
      if (wire.format === "json") checkJsonValues(raw);
      else if (wire.format === "binary") checkBinaryValues(spec.method.input, raw);
      decoded = await wire.decode(raw);
    } catch (thrown) {
      if (thrown instanceof RequestBodyEnded) throw thrown;
      await wire.error(call, call.fail(thrown));
      return;
    }
    // The method called: the wire's, or the one the codec learnt from the body.
    const target = decoded.spec ?? spec;
    if (target.kind === "unary") {
      let answer: unknown;
      try {
        const impl = decoded.unary ?? (decoded.spec === undefined ? undefined : target.impl);
        answer =
          impl === undefined
            ? await call.unary(decoded.request as Message)
            : await call.unaryWith(decoded.request as never, impl as never, target.method);
      } catch (err) {
        // Already the wire error, recorded on the exchange by the one converter.
        await wire.error(call, err as ConnectError);
        return;
      }
      try {
        await wire.unary(call, answer);
      } catch (thrown) {
        // An AppError of the codec about the answer (a model not listed) answers the call; anything else
        // is a failure of the codec.
        if (!(thrown instanceof AppError)) throw thrown;
        await wire.error(call, call.fail(thrown));
      }
      return;
    }
    const impl =
      decoded.stream ??
      (decoded.spec === undefined || target.kind !== "server_streaming" ? undefined : target.impl);
    const messages =
      impl === undefined
        ? call.stream(decoded.request as Message)
        : call.streamWith(decoded.request as never, impl as never, target.method);
    await wire.stream(call, messages);
  }

  return {
    async run(exchange, wire) {
      const call = calls.open(exchange, wire.spec, wire.init);
      try {
        await serve(exchange, wire, call);
      } catch (thrown) {
        const { res } = exchange;
        if (thrown instanceof RequestBodyEnded) {
          // Nobody to answer (or the body deadline already did): the access line tells how it ended.
          if (!res.writableEnded) res.destroy();
          return;
        }
        // Only a scrubbed message: the cause of an unexpected failure may quote anything.
        const cause = scrubSecrets(
          thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : String(thrown),
        );
        logger.error({ requestId: exchange.requestId, cause, path: exchange.path }, `${wire.name} failure`);
        const err = call.fail(thrown);
        try {
          await wire.error(call, err);
        } catch {
          if (!res.writableEnded) res.destroy();
        }
      }
    },
    refuse(exchange, thrown, write) {
      write(failCall(createContextValues().set(exchangeKey, exchange), thrown));
    },
  };
}
