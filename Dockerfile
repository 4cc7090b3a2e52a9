# Multi-stage build (SPEC S11): production dependencies and the compiled server, nothing else, run as the
# unprivileged `node` user. Cloud Run sets PORT (8080); the server listens on 0.0.0.0:$PORT.
#
# The runtime stage is reproduced without Docker by test/deploy/runtime-stage.test.ts, which reads THIS file:
# its COPY --from lines are the list of shipped paths, its ENV the environment, its USER and CMD how the
# server runs. Keep the runtime stage to ENV, WORKDIR, COPY --from, USER, EXPOSE and CMD (the test refuses
# anything else), so what CI proves is what the image runs.

# Production dependencies only (no compiler, no test tools, no Node binary from the `node` devDependency).
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# The compiled server.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY gen ./gen
COPY src ./src
RUN npm run build

FROM node:24-bookworm-slim
# V8 sizes its young generation from the instance's memory: on Cloud Run's default 512 MiB that is a 1 MiB
# semi-space, and under load the server then spends a large share of its CPU in scavenges (bench/RESULTS.md).
# 8 MiB removes most of that cost (512 calls in flight peak at 250-265 MB resident in the benchmark). The
# benchmark reads this line, so it measures what this image runs. Override with --update-env-vars NODE_OPTIONS=...
ENV NODE_ENV=production \
    PORT=8080 \
    NODE_OPTIONS="--max-semi-space-size=8"
WORKDIR /app
# Owned by root and read-only for the server's user: the running server cannot modify its own code. The CLI
# inside the image therefore writes keys with --config-dir /tmp/... or prints them with keygen --stdout.
COPY --from=deps /app/package.json ./package.json
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
USER node
EXPOSE 8080
# SIGTERM goes straight to node (no shell in between), which drains in-flight calls and exits 0.
CMD ["node", "dist/src/main.js"]
