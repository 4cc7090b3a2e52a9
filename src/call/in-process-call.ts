import type { ConnectError } from "@connectrpc/connect";
import {
  createContextValues,
  createHandlerContext,
  type HandlerContext,
  type Interceptor,
  type ServiceImplSpec,
  type StreamRequest,
  type UnaryRequest,
} from "@connectrpc/connect";
import {
  createAsyncIterable,
  invokeUnaryImplementation,
  transformInvokeImplementation,
} from "@connectrpc/connect/protocol";
import type { DescMethod, Message } from "@bufbuild/protobuf";
import { cancelReason, copyHeaders, intercept, type StreamingFn, type UnaryFn } from "../compat/connect.js";
import { exchangeKey, type Exchange } from "../edge/exchange.js";
import { callEnded, type CallSignals } from "./call-registry.js";
import { accessRecordKey } from "../edge/access-record.js";
import { failCall } from "./wire-error.js";

type MethodSpec = ServiceImplSpec["methods"][string];
type HeadersInit = ConstructorParameters<typeof Headers>[0];

export interface InProcessCallOptions {
  /** The router's interceptors, outermost first. */
  readonly interceptors: readonly Interceptor[];
  /** The running calls, aborted together at the end of the shutdown grace (src/call/call-registry.ts). */
  readonly registry: CallSignals;
}

export interface CallInit {
  readonly protocolName: string;
  readonly url: string;
  readonly requestHeader: HeadersInit;
  readonly responseHeader?: HeadersInit;
  readonly responseTrailer?: HeadersInit;
  /** The caller's deadline, already parsed and checked against the maximum. */
  readonly timeoutMs: number | undefined;
}

/** One call invoked in-process, with connect's handler context. */
export interface InProcessCall {
  readonly context: HandlerContext;
  /** Runs a unary method through the interceptors; throws the wire error (already on the exchange). */
  unary(request: Message): Promise<Message>;
  /** Runs a server-streaming method through the interceptors; its iterator throws wire errors. */
  stream(request: Message): AsyncIterator<Message>;
  /** The wire error for something that failed this call outside the interceptors; aborts the context. */
  fail(thrown: unknown): ConnectError;
  /**
   * Like `unary`, with `impl` in place of the method's implementation and answers that are not protobuf
   * messages (the JSON surfaces' chat calls, src/services/chat-json.ts): the interceptors see the method, the
   * context and `request` as the request message, and connect's normalization of the answer is skipped.
   */
  unaryWith<I, O>(
    request: I,
    impl: (request: I, context: HandlerContext) => Promise<O>,
    method?: DescMethod,
  ): Promise<O>;
  /**
   * Like `stream`, with `impl` in place of the method's implementation (see `unaryWith`). `method`, when
   * given, is the one the interceptors see: the OpenAI route learns from the body which of two RPCs runs.
   */
  streamWith<I, O>(
    request: I,
    impl: (request: I, context: HandlerContext) => AsyncIterable<O>,
    method?: DescMethod,
  ): AsyncIterator<O>;
}

export interface InProcessCalls {
  /**
   * Opens a call of `spec` for `exchange`: the handler context connect would build (deadline, headers,
   * context values with the exchange), whose signal aborts when the client goes away before the answer is
   * complete (a closed connection, an HTTP/2 reset: CANCELLED, or connect-node's code for the reset) or at
   * the end of the shutdown grace.
   */
  open(exchange: Exchange, spec: MethodSpec, init: CallInit): InProcessCall;
}

/**
 * How the call pipeline (pipeline.ts) runs a call: it invokes the very implementations the
 * Connect router serves, through the same interceptors, without serializing messages, and with the same
 * links to the client, the deadline and the shutdown (docs/architecture.md, "The request path").
 */
export function createInProcessCalls(options: InProcessCallOptions): InProcessCalls {
  const interceptors = [...options.interceptors];
  const calls = options.registry;

  return {
    open(exchange, spec, init) {
      const { req, res } = exchange;
      const abort = calls.open();
      res.once("close", () => {
        calls.close(abort);
        // A reset also leaves the compat response finished: an answer is complete only if we ended it and
        // no reset came first (see src/edge/exchange.ts).
        const rst = "stream" in req ? req.stream.rstCode : undefined;
        if (!res.writableEnded || (rst !== undefined && rst !== 0)) abort.abort(cancelReason(rst));
      });
      const contextValues = createContextValues()
        .set(exchangeKey, exchange)
        .set(accessRecordKey, exchange.record);
      const context = createHandlerContext({
        service: spec.method.parent,
        method: spec.method,
        protocolName: init.protocolName,
        requestMethod: "POST",
        url: init.url,
        requestSignal: abort.signal,
        requestHeader: init.requestHeader,
        contextValues,
        ...(init.responseHeader === undefined ? {} : { responseHeader: init.responseHeader }),
        ...(init.responseTrailer === undefined ? {} : { responseTrailer: init.responseTrailer }),
        ...(init.timeoutMs === undefined ? {} : { timeoutMs: init.timeoutMs }),
      });
      const fail = (thrown: unknown): ConnectError => {
        const err = failCall(contextValues, thrown, context.signal);
        context.abort(err);
        return err;
      };
      /** What connect's invoke-implementation.js gives interceptors: the call's common request fields. */
      const requestCommon = {
        requestMethod: context.requestMethod,
        url: context.url,
        signal: context.signal,
        header: context.requestHeader,
        service: spec.method.parent,
        contextValues: context.values,
      };
      const responseCommon = {
        service: spec.method.parent,
        header: context.responseHeader,
        trailer: context.responseTrailer,
      };
      /** The handler context an implementation sees, as connect merges it with what interceptors passed on. */
      const merged = (req: UnaryRequest | StreamRequest): HandlerContext => ({
        ...context,
        service: req.service,
        requestHeader: req.header,
        signal: req.signal,
        values: req.contextValues,
      });
      return {
        context,
        fail,
        async unaryWith<I, O>(
          request: I,
          impl: (request: I, context: HandlerContext) => Promise<O>,
          called?: DescMethod,
        ) {
          const method = (called ?? spec.method) as UnaryRequest["method"];
          let answer: O;
          try {
            const next = intercept<UnaryFn>(async (req) => {
              const message = await impl(req.message as unknown as I, merged(req));
              return { ...responseCommon, method, stream: false, message: message as unknown as Message };
            }, interceptors);
            const res = await next({
              ...requestCommon,
              method,
              stream: false,
              message: request as unknown as Message,
            });
            copyHeaders(res.header, context.responseHeader);
            copyHeaders(res.trailer, context.responseTrailer);
            answer = res.message as unknown as O;
          } catch (thrown) {
            throw fail(thrown);
          }
          if (init.timeoutMs !== undefined) context.abort(callEnded);
          return answer;
        },
        streamWith<I, O>(
          request: I,
          impl: (request: I, context: HandlerContext) => AsyncIterable<O>,
          called?: DescMethod,
        ) {
          const method = (called ?? spec.method) as StreamRequest["method"];
          const next = intercept<StreamingFn>(async (req) => {
            const first: IteratorResult<unknown> = await req.message[Symbol.asyncIterator]().next();
            const message = impl(first.value as I, merged(req));
            return {
              ...responseCommon,
              method,
              stream: true,
              message: message as unknown as AsyncIterable<Message>,
            };
          }, interceptors);
          async function* run(): AsyncGenerator<O> {
            const res = await next({
              ...requestCommon,
              method,
              stream: true,
              message: createAsyncIterable([request as unknown as Message]),
            });
            copyHeaders(res.header, context.responseHeader);
            for await (const message of res.message) yield message as unknown as O;
            copyHeaders(res.trailer, context.responseTrailer);
          }
          const messages = run();
          return {
            async next() {
              try {
                return await messages.next();
              } catch (thrown) {
                throw fail(thrown);
              }
            },
            async return() {
              await messages.return(undefined);
              context.abort();
              return { done: true, value: undefined };
            },
          };
        },
        async unary(request) {
          if (spec.kind !== "unary") throw fail(new Error(`${spec.method.name} is not unary`));
          let message: Message;
          try {
            message = await invokeUnaryImplementation(spec, context, request, interceptors);
          } catch (thrown) {
            throw fail(thrown);
          }
          // Connect aborts the context after every call. Its signal is linked only to this request's own
          // signals, which nothing else holds: an abort is needed only to stop the deadline timer (an
          // abort costs a DOMException and an event to every signal derived from it).
          if (init.timeoutMs !== undefined) context.abort(callEnded);
          return message;
        },
        stream(request) {
          const messages = transformInvokeImplementation(
            spec,
            context,
            interceptors,
          )(createAsyncIterable([request]))[Symbol.asyncIterator]();
          return {
            async next() {
              try {
                return await messages.next();
              } catch (thrown) {
                throw fail(thrown);
              }
            },
            async return(value?: unknown) {
              await messages.return?.(value);
              context.abort();
              return { done: true, value: undefined };
            },
          };
        },
      };
    },
  };
}
