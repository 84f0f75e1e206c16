// Wires one poolview: options → upstream → views → proxy servers (plain, HTTPS) → health server.
// Everything process-wide (flags, signals, exit codes) stays in cli.ts.
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { Upstream } from './types.js';
import { resolveOptions, UsageError, type PoolviewOptions } from './options.js';
import { createLogger, type Logger } from './log.js';
import { createMetrics } from './metrics.js';
import { upstreamFromKubeconfig, type KubeUpstream } from './upstream.js';
import { createProxyApp, createProxyHandler, OpenRequests } from './server.js';
import { createUpgradeHandler } from './upgrade.js';
import { createHealthApp, startUpstreamProbe } from './health.js';
import { startViews, type ViewOptions, type ViewService } from './views/index.js';

export type { PoolviewOptions };

export interface RunningPoolview {
  url: string;
  secureUrl?: string;
  healthUrl: string;
  upstream: Upstream;
  registry: Registry;
  /** Graceful shutdown: stop accepting, end watches cleanly, wait briefly for the rest. */
  close(): Promise<void>;
}

export interface PoolviewDeps {
  upstream?: Upstream;
  logger?: Logger;
  /** How long requests other than watches may take to finish at shutdown. */
  shutdownGraceMs?: number;
  /** How often the apiserver is probed for /readyz. */
  probeIntervalMs?: number;
  /** The view engine to run; tests of the bare proxy pass one that intercepts nothing. */
  startViews?: (opts: ViewOptions) => Promise<ViewService>;
}

function readTlsFile(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UsageError(`cannot read ${flag} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function urlOf(scheme: string, app: FastifyInstance): string {
  const { address, port } = app.server.address() as AddressInfo;
  // A wildcard bind is reachable on loopback; show an address one can connect to.
  const host = address === '0.0.0.0' ? '127.0.0.1' : address === '::' ? '::1' : address;
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export async function startPoolview(
  opts: Partial<PoolviewOptions> & { nodeName: string; kubeconfig?: string },
  deps: PoolviewDeps = {},
): Promise<RunningPoolview> {
  const options = resolveOptions(opts);
  const log = deps.logger ?? createLogger(options.logLevel);
  const tls = options.tlsCertFile
    ? { cert: readTlsFile(options.tlsCertFile, '--tls-cert-file'), key: readTlsFile(options.tlsPrivateKeyFile!, '--tls-private-key-file') }
    : undefined;
  const ownedUpstream: KubeUpstream | undefined = deps.upstream ? undefined : await upstreamFromKubeconfig(options.kubeconfig);
  const upstream: Upstream = deps.upstream ?? ownedUpstream!;
  const metrics = createMetrics();
  const registry = metrics.registry;

  const cleanups: Array<() => Promise<void> | void> = [];
  const cleanup = async () => {
    for (const fn of cleanups.splice(0).reverse()) await Promise.resolve(fn()).catch(() => {});
  };
  if (ownedUpstream) cleanups.push(() => ownedUpstream.close());
  const proxies: FastifyInstance[] = [];

  try {
    const probe = startUpstreamProbe(upstream, { intervalMs: deps.probeIntervalMs ?? 5_000, metrics, log });
    cleanups.push(() => probe.stop());
    await probe.probe();

    const views: ViewService = await (deps.startViews ?? startViews)({
      upstream,
      nodeName: options.nodeName,
      nodePoolName: options.nodePoolName,
      configMap: { namespace: options.configMapNamespace, name: options.configMapName },
      featureGates: options.featureGates,
      log,
      registry,
    });
    const closeViews = once(() => views.close());
    cleanups.push(closeViews);

    const open = new OpenRequests();
    const tunnels = new Set<Duplex>();
    const common = { upstream, anonymousRequests: options.anonymousRequests, metrics, log };
    const handler = createProxyHandler({ ...common, intercept: views.intercept, open });
    const onUpgrade = createUpgradeHandler({ ...common, tunnels });

    proxies.push(createProxyApp({ handler }));
    if (tls) proxies.push(createProxyApp({ handler, https: tls }));
    // Raw sockets too: a TLS connection still in its handshake is not one closeAllConnections() knows.
    const sockets = new Set<Duplex>();
    for (const app of proxies) {
      app.server.on('upgrade', onUpgrade);
      app.server.on('connection', (socket: Duplex) => {
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
      });
    }
    await proxies[0].listen({ host: options.bindAddress, port: options.port });
    if (proxies[1]) await proxies[1].listen({ host: options.bindAddress, port: options.securePort! });

    let shuttingDown = false;
    const health = createHealthApp({
      registry,
      checks: () => [
        probe.check(),
        ...views.readiness(),
        ...(shuttingDown ? [{ name: 'shutdown', ok: false, detail: 'poolview is shutting down' }] : []),
      ],
    });
    cleanups.push(() => health.close());
    await health.listen({ host: options.bindAddress, port: options.healthPort });

    const running: RunningPoolview = {
      url: urlOf('http', proxies[0]),
      secureUrl: proxies[1] ? urlOf('https', proxies[1]) : undefined,
      healthUrl: urlOf('http', health),
      upstream,
      registry,
      close: once(async () => {
        shuttingDown = true;
        log.info({ open: open.size, tunnels: tunnels.size }, 'shutting down');
        // Stop accepting; idle keep-alive connections close now, new requests on others get 503.
        const closed = Promise.all(proxies.map((app) => app.close()));
        open.endWatches();
        for (const socket of tunnels) socket.destroy();
        await closeViews().catch((err) => log.warn({ err }, 'view engine did not close cleanly'));
        if (!(await open.idle(deps.shutdownGraceMs ?? 3_000))) {
          log.warn({ open: open.size }, 'requests still open at shutdown; closing them');
          open.destroyAll();
        }
        for (const app of proxies) app.server.closeAllConnections();
        for (const socket of sockets) socket.destroy();
        await closed;
        await cleanup();
        log.info('stopped');
      }),
    };
    log.info({ url: running.url, secureUrl: running.secureUrl, healthUrl: running.healthUrl, upstream: upstream.url.origin, node: options.nodeName }, 'poolview serving');
    return running;
  } catch (err) {
    await Promise.all(proxies.map((app) => app.close().catch(() => {})));
    await cleanup();
    throw err;
  }
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= fn());
}
