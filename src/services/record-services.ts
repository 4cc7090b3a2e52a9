import {
  createMethodImplSpec,
  createServiceImplSpec,
  type ConnectRouter,
  type ServiceImplSpec,
} from "@connectrpc/connect";

/**
 * Wraps a Connect router so that every service (and single RPC) registered through it is also recorded in
 * `specs`, for the REST transcoder to invoke the same implementations in-process. Registration is
 * forwarded unchanged; `handlers` is the router's own list (reflection reads it). Per-service handler
 * options (their own interceptors, for instance) are not recorded: the transcoder runs the interceptors it
 * is given, so register services with the router-wide interceptors only.
 */
export function recordServices(router: ConnectRouter, specs: ServiceImplSpec[]): ConnectRouter {
  const recording: ConnectRouter = {
    handlers: router.handlers,
    service(service, implementation, options) {
      specs.push(createServiceImplSpec(service, implementation));
      router.service(service, implementation, options);
      return this;
    },
    rpc(method, impl, options) {
      specs.push({
        service: method.parent,
        methods: { [method.localName]: createMethodImplSpec(method, impl) },
      });
      router.rpc(method, impl, options);
      return this;
    },
  };
  return recording;
}
