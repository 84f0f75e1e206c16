# syntax=docker/dockerfile:1
#
# poolview image: one process (node bin/poolview.js), no shell needed at runtime.
#
#   docker build -t poolview:0.1.0 .
#
# - Build stage compiles TypeScript to dist/ with the full dev toolchain.
# - Runtime stage holds production dependencies, dist/, bin/ and config/ only.
# - Runs as uid/gid 65532 (numeric, so the kubelet can verify runAsNonRoot) and writes nothing
#   outside /tmp, so it works with readOnlyRootFilesystem (mount an emptyDir at /tmp).
# - PID 1 is node itself (exec-form ENTRYPOINT): the CLI installs its own SIGTERM/SIGINT handlers
#   and spawns no child processes, so there is nothing for an init (tini) to forward or reap.

ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: npm ci + npm run build ---------------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the "prepare" script would run tsc before the sources are copied.
RUN --mount=type=cache,target=/root/.npm \
    npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY filters ./filters
# The in-process fake apiserver and the control-plane harness back `poolview demo`.
COPY test/fake ./test/fake
COPY test/support/cluster.ts ./test/support/cluster.ts
RUN npm run build

# ---- runtime ---------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only; no install scripts run (none of them need one).
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund
# HOME in /tmp: the only writable place under readOnlyRootFilesystem. MALLOC_MMAP_THRESHOLD_: glibc
# maps blocks of 64 KiB and more (socket and list buffers) on their own and gives them back when
# freed, instead of keeping them in its heap: about 55 MiB less RSS at 10,000 Services and
# EndpointSlices, for about 10% more time per large filtered LIST (bench/README.md). Unset it to trade back.
ENV NODE_ENV=production \
    HOME=/tmp \
    MALLOC_MMAP_THRESHOLD_=65536
COPY --from=build /src/dist ./dist
COPY bin ./bin
COPY config ./config

USER 65532:65532
# 10261 plain HTTP proxy, 10268 HTTPS proxy, 10267 health/metrics (yurt-hub's ports).
EXPOSE 10261 10267 10268
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "bin/poolview.js"]
