import type { Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";

/**
 * The one table of Connect-ES transports the protocol matrices run over (README "Protocols": every
 * protocol on one port, both HTTP versions). A matrix picks rows by name so that every file spells a
 * combination the same way and a new combination is added here once.
 */
export interface TransportCase {
  readonly name: TransportName;
  readonly protocol: "connect" | "grpc" | "grpc-web";
  readonly httpVersion: "1.1" | "2";
  /** Connect only: protobuf binary instead of JSON (gRPC and gRPC-Web are always binary). */
  readonly binary: boolean;
  readonly transport: (baseUrl: string) => Transport;
}

export const transportNames = [
  "Connect JSON, HTTP/1.1",
  "Connect binary, HTTP/1.1",
  "Connect JSON, HTTP/2",
  "Connect binary, HTTP/2",
  "gRPC-Web, HTTP/1.1",
  "gRPC-Web, HTTP/2",
  "gRPC, HTTP/2",
] as const;
export type TransportName = (typeof transportNames)[number];

function connect(name: TransportName, httpVersion: "1.1" | "2", binary: boolean): TransportCase {
  return {
    name,
    protocol: "connect",
    httpVersion,
    binary,
    transport: (baseUrl) => createConnectTransport({ baseUrl, httpVersion, useBinaryFormat: binary }),
  };
}

function grpcWeb(name: TransportName, httpVersion: "1.1" | "2"): TransportCase {
  return {
    name,
    protocol: "grpc-web",
    httpVersion,
    binary: true,
    transport: (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion }),
  };
}

/** Every row, in `transportNames` order. */
export const transportCases: readonly TransportCase[] = [
  connect("Connect JSON, HTTP/1.1", "1.1", false),
  connect("Connect binary, HTTP/1.1", "1.1", true),
  connect("Connect JSON, HTTP/2", "2", false),
  connect("Connect binary, HTTP/2", "2", true),
  grpcWeb("gRPC-Web, HTTP/1.1", "1.1"),
  grpcWeb("gRPC-Web, HTTP/2", "2"),
  {
    name: "gRPC, HTTP/2",
    protocol: "grpc",
    httpVersion: "2",
    binary: true,
    transport: (baseUrl) => createGrpcTransport({ baseUrl }),
  },
];

/** One row by name. */
export function transportCase(name: TransportName): TransportCase {
  const found = transportCases.find((c) => c.name === name);
  if (!found) throw new Error(`no transport case ${name}`);
  return found;
}

/** A transport of the named row for a server at `baseUrl`. */
export function transportOf(name: TransportName, baseUrl: string): Transport {
  return transportCase(name).transport(baseUrl);
}
