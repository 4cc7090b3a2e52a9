// The scenarios: what load, on which API, compared with which floor run. `floor` names the floor run a
// server run is compared with; only REST-shaped scenarios have their own floor run (the raw forwarder
// speaks plain HTTP/1.1), so Connect and gRPC are compared with the REST floor at the same concurrency.

/** Provider latency the slow scenarios add (the mock's /delay/<ms> prefix). */
export const SLOW_DELAY_MS = 100;

/** Content chunks of each stream in sse-<n> (the mock's /chunks/<n>/ prefix)... */
export const SSE_CHUNKS = 20;
/** ...sent over this long (the mock's /delay/<ms>/ prefix): one chunk every 100 ms. */
export const SSE_SPREAD_MS = 2000;

/**
 * The surface a scenario calls: REST JSON, REST SSE (wrk), Connect JSON, gRPC over h2c, or REST SSE read
 * stream by stream (bench/lib/sse-load.ts).
 */
export type Api = "rest" | "rest-stream" | "connect" | "grpc" | "sse";

export interface Scenario {
  /** The id in the report and in --only (slow-<n> and stream-<n> carry --slow-connections, sse-<n> --sse-streams). */
  id: string;
  /** A stable name that --only also takes and the verdicts look for (slow-512, stream-512, sse-1000); else the id. */
  key: string;
  title: string;
  api: Api;
  connections: number;
  /** Concurrent streams per connection (h2load -m); 1 except grpc-1x32. */
  streams: number;
  delayMs: number;
  /** The id of the floor run this scenario is compared with. */
  floor: string;
  /** Skipped (and said so) rather than failed when the server's pre-flight call fails. */
  optional: boolean;
}

/** The ids --only takes (slow-512 and stream-512 are the keys of the slow scenarios at any size). */
export const SCENARIO_IDS = [
  "rest-1",
  "rest-32",
  "connect-1",
  "connect-32",
  "grpc-1",
  "grpc-32",
  "grpc-1x32",
  "slow-512",
  "stream-512",
  "sse-1000",
] as const;

type ScenarioInput = Omit<Scenario, "key" | "streams" | "optional"> &
  Partial<Pick<Scenario, "key" | "streams" | "optional">>;

/** The scenarios to run: all, or those --only names (by id or key). */
export function scenarios(options: {
  slowConnections: number;
  sseStreams: number;
  only: Set<string> | undefined;
}): Scenario[] {
  const slow = options.slowConnections;
  const all: ScenarioInput[] = [
    { id: "rest-1", title: "REST unary, 1 conn", api: "rest", connections: 1, delayMs: 0, floor: "rest-1" },
    {
      id: "rest-32",
      title: "REST unary, 32 conns",
      api: "rest",
      connections: 32,
      delayMs: 0,
      floor: "rest-32",
    },
    {
      id: "connect-1",
      title: "Connect JSON, 1 conn",
      api: "connect",
      connections: 1,
      delayMs: 0,
      floor: "rest-1",
    },
    {
      id: "connect-32",
      title: "Connect JSON, 32 conns",
      api: "connect",
      connections: 32,
      delayMs: 0,
      floor: "rest-32",
    },
    { id: "grpc-1", title: "gRPC h2c, 1 conn", api: "grpc", connections: 1, delayMs: 0, floor: "rest-1" },
    {
      id: "grpc-32",
      title: "gRPC h2c, 32 conns",
      api: "grpc",
      connections: 32,
      delayMs: 0,
      floor: "rest-32",
    },
    {
      // How gRPC clients (grpc-js, grpc-go) really call: one HTTP/2 connection, many concurrent streams.
      id: "grpc-1x32",
      title: "gRPC h2c, 1 conn × 32 streams",
      api: "grpc",
      connections: 1,
      streams: 32,
      delayMs: 0,
      floor: "rest-32",
    },
    {
      id: `slow-${slow}`,
      key: "slow-512",
      title: `REST, ${slow} calls, provider +${SLOW_DELAY_MS} ms`,
      api: "rest",
      connections: slow,
      delayMs: SLOW_DELAY_MS,
      floor: `slow-${slow}`,
    },
    {
      id: `stream-${slow}`,
      key: "stream-512",
      title: `REST SSE, ${slow} streams, ${SLOW_DELAY_MS} ms each`,
      api: "rest-stream",
      connections: slow,
      delayMs: SLOW_DELAY_MS,
      floor: `stream-${slow}`,
      // Streaming is optional in the server's history: the scenario is skipped (and said so) when the
      // route does not answer with an event stream yet.
      optional: true,
    },
    {
      // One wave of n streams opened at once per round (not wrk: it cannot see chunks, gaps or [DONE]).
      id: `sse-${options.sseStreams}`,
      key: "sse-1000",
      title: `REST SSE, ${options.sseStreams} streams × ${SSE_CHUNKS} chunks over ${SSE_SPREAD_MS / 1000} s`,
      api: "sse",
      connections: options.sseStreams,
      delayMs: SSE_SPREAD_MS,
      floor: `sse-${options.sseStreams}`,
    },
  ];
  return all
    .map((s) => ({ ...s, key: s.key ?? s.id, streams: s.streams ?? 1, optional: s.optional ?? false }))
    .filter((s) => options.only === undefined || options.only.has(s.id) || options.only.has(s.key));
}
