// Wires one poolview: options → upstream → views → proxy servers (plain, HTTPS) → health server.
// Everything process-wide (flags, signals, exit codes) stays in cli.ts.
import { isIP, type AddressInfo } from 'node:net';
import type { Server as TlsServer } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Server } from 'node:http';
import type { Registry } from 'prom-client';
import type { Upstream } from './types.js';
import { proxyHost, resolveOptions, type PoolviewOptions } from './options.js';
import { enabledFilters } from '../filters/index.js';
import { createLogger, type Logger } from './log.js';
import { createMetrics, createServingCertificateMetrics } from './metrics.js';
import { upstreamFromKubeconfig, type KubeUpstream } from './upstream.js';
import { createProxyServer, createProxyHandler, OpenRequests } from './server.js';
import { createUpgradeHandler } from './upgrade.js';
import { createHealthServer, startUpstreamProbe } from './health.js';
import { startViews, type ViewOptions, type ViewService } from './views/index.js';
import { ServingCertificate, watchCertificateFiles, type CertificateSource, type ServingPair } from './serving-cert.js';
import { startCertificateManager } from './certificate-manager.js';
import { WatchCaches, type WatchCacheOptions } from './cache/index.js';

export type { PoolviewOptions };

export interface RunningPoolview {
  url: string;
  /** The HTTPS URL once the secure port serves (with --rotate-server-certificates: once a certificate is issued). */
  readonly secureUrl?: string;
  /** Resolves with secureUrl when the secure port serves; undefined without a secure port. */
  secureReady?: Promise<string>;
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
  /** How often --tls-cert-file/--tls-private-key-file are checked for a change. */
  certificateFilesIntervalMs?: number;
  /** Delay before the n-th new CertificateSigningRequest after a refused or failed one. */
  csrRetryDelayMs?: (attempt: number) => number;
  /** Watch cache settings beyond the flags (bookmark interval, slow-client bound) for tests. */
  cache?: Partial<Pick<WatchCacheOptions, 'bookmarkIntervalMs' | 'maxBufferedBytes' | 'syncTimeoutMs'>>;
}

function urlOf(scheme: string, server: Server): string {
  const { address, port } = server.address() as AddressInfo;
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
  const metrics = createMetrics();
  const registry = metrics.registry;
  const serving = options.securePort !== undefined ? new ServingCertificate(log, createServingCertificateMetrics(registry)) : undefined;
  const certificates: CertificateSource[] = [];
  // Files are read (and checked) before anything else: a bad pair is a mistake in the invocation.
  if (serving && options.tlsCertFile) {
    certificates.push(
      watchCertificateFiles({ certFile: options.tlsCertFile, keyFile: options.tlsPrivateKeyFile!, serving, log, intervalMs: deps.certificateFilesIntervalMs }),
    );
  }
  const cleanups: Array<() => Promise<void> | void> = [];
  const cleanup = async () => {
    for (const fn of cleanups.splice(0).reverse()) await Promise.resolve(fn()).catch(() => {});
  };
  cleanups.push(() => Promise.all(certificates.map((c) => c.stop())).then(() => {}));
  let ownedUpstream: KubeUpstream | undefined;
  try {
    ownedUpstream = deps.upstream ? undefined : await upstreamFromKubeconfig(options.kubeconfig);
  } catch (err) {
    await cleanup();
    throw err;
  }
  if (ownedUpstream) cleanups.push(() => ownedUpstream.close());
  // Every GET of a cached resource, by clients, the view engine or the scope sources, reads through
  // one watch cache per resource: one upstream LIST+WATCH each.
  const caches = new WatchCaches(deps.upstream ?? ownedUpstream!, {
    history: options.watchCacheHistory,
    authorizationTtlMs: options.authorizationCacheTtlMs,
    log,
    registry,
    ...deps.cache,
  });
  cleanups.push(() => caches.close());
  const upstream: Upstream = caches.upstreamThroughCache();
  const proxies: Server[] = [];
  let shuttingDown = false;
  const closing = () => shuttingDown;

  try {
    const probe = startUpstreamProbe(upstream, { intervalMs: deps.probeIntervalMs ?? 5_000, metrics, log });
    cleanups.push(() => probe.stop());
    await probe.probe();
    if (serving && options.rotateServerCertificates) {
      // A specific address poolview binds to is one clients dial: name it in the certificate too, and
      // the address in-cluster clients are sent to (the dummy interface's).
      const bind = options.bindAddress;
      const dialled = (ip: string | undefined): ip is string => ip !== undefined && isIP(ip) !== 0 && ip !== '0.0.0.0' && ip !== '::';
      const extra = [...new Set([bind, proxyHost(options)].filter(dialled))];
      certificates.push(
        startCertificateManager({
          upstream,
          nodeName: options.nodeName,
          certDir: options.certDir,
          serving,
          log,
          extraNames: { dnsNames: [], ipAddresses: extra },
          retryDelayMs: deps.csrRetryDelayMs,
        }),
      );
    }

    // Where in-cluster clients reach poolview: only over HTTPS, so only with a secure port. Port 0
    // (tests) is known once the port listens.
    const host = proxyHost(options);
    const addressAt = (securePort: number | undefined) => (host !== undefined && securePort ? { host, securePort } : undefined);
    if (options.securePort === undefined || host === undefined) {
      const why = options.securePort === undefined ? 'no secure port' : 'wildcard --bind-address and no --enable-dummy-if';
      log.info({ bindAddress: options.bindAddress }, `no address for in-cluster clients (${why}): masterservice, serviceenvupdater, forwardkubesvctraffic change nothing`);
    }
    const views: ViewService = await (deps.startViews ?? startViews)({
      filters: enabledFilters(options.disabledFilters, options.workingMode),
      proxyAddress: addressAt(options.securePort),
      upstream,
      nodeName: options.nodeName,
      nodePoolName: options.nodePoolName,
      configMap: { namespace: options.configMapNamespace, name: options.configMapName },
      featureGates: options.featureGates,
      scopeChangeWaitMs: options.scopeChangeWaitMs,
      log,
      registry,
    });
    const closeViews = once(() => views.close());
    cleanups.push(closeViews);

    const open = new OpenRequests();
    const tunnels = new Set<Duplex>();
    const common = { upstream, anonymousRequests: options.anonymousRequests, metrics, log };
    const handler = createProxyHandler({ ...common, intercept: views.intercept, open });
    // --enable-dummy-if: the secure port also listens on the dummy address, unless the bind address covers it.
    const wildcard = options.bindAddress === '0.0.0.0' || options.bindAddress === '::';
    const dummyAddress = options.enableDummyIf && !wildcard && host !== options.bindAddress ? host : undefined;
    const onUpgrade = createUpgradeHandler({ ...common, tunnels });

    // Raw sockets too: a TLS connection still in its handshake is not one closeAllConnections() knows.
    const sockets = new Set<Duplex>();
    const serve = async (server: Server, port: number, host = options.bindAddress) => {
      proxies.push(server);
      server.on('upgrade', onUpgrade);
      server.on('connection', (socket: Duplex) => {
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
      });
      await listen(server, host, port);
    };
    await serve(createProxyServer({ handler, closing }), options.port);

    let secureUrl: string | undefined;
    /** The secure port, once there is a certificate; later certificates reach it through setSecureContext. */
    const serveSecure = async (pair: ServingPair): Promise<string> => {
      if (shuttingDown) throw new Error('poolview is shutting down');
      const server = createProxyServer({ handler, closing, https: { cert: pair.cert, key: pair.key } });
      serving!.use(server as TlsServer);
      await serve(server, options.securePort!);
      const port = (server.address() as AddressInfo).port;
      if (dummyAddress) {
        // As yurt-hub: pods reach the secure port on the dummy address. Requests there come from
        // other network namespaces, so they never borrow poolview's identity.
        const forPods = createProxyHandler({ ...common, anonymousRequests: 'forward', intercept: views.intercept, open });
        const dummy = createProxyServer({ handler: forPods, closing, https: { cert: pair.cert, key: pair.key } });
        serving!.use(dummy as TlsServer);
        await serve(dummy, port, dummyAddress);
      }
      secureUrl = urlOf('https', server);
      views.scope?.setProxyAddress?.(addressAt(port));
      return secureUrl;
    };
    let secureReady: Promise<string> | undefined;
    if (serving?.current) {
      secureReady = Promise.resolve(await serveSecure(serving.current));
    } else if (serving) {
      // The plain and health ports do not wait for an approver; the secure port opens when it can.
      secureReady = serving.ready().then(serveSecure);
      secureReady.then(
        (url) => log.info({ secureUrl: url }, 'secure port serving'),
        (err: Error) => {
          if (!shuttingDown) log.error({ err: err.message, port: options.securePort }, 'cannot serve the secure port');
        },
      );
    }

    const health = createHealthServer({
      registry,
      checks: () => [
        probe.check(),
        ...certificates.map((c) => c.check()),
        ...views.readiness(),
        ...(shuttingDown ? [{ name: 'shutdown', ok: false, detail: 'poolview is shutting down' }] : []),
      ],
    });
    cleanups.push(() => closeServer(health));
    await listen(health, options.healthBindAddress, options.healthPort);

    const running: RunningPoolview = {
      url: urlOf('http', proxies[0]!),
      get secureUrl() {
        return secureUrl;
      },
      secureReady,
      healthUrl: urlOf('http', health),
      upstream,
      registry,
      close: once(async () => {
        shuttingDown = true;
        log.info({ open: open.size, tunnels: tunnels.size }, 'shutting down');
        await Promise.all(certificates.map((c) => c.stop()));
        // Stop accepting; idle keep-alive connections close now, new requests on others get 503.
        const closed = Promise.all(proxies.map(closeServer));
        open.endWatches();
        for (const socket of tunnels) socket.destroy();
        await closeViews().catch((err) => log.warn({ err }, 'view engine did not close cleanly'));
        if (!(await open.idle(deps.shutdownGraceMs ?? 3_000))) {
          log.warn({ open: open.size }, 'requests still open at shutdown; closing them');
          open.destroyAll();
        }
        for (const server of proxies) server.closeAllConnections();
        for (const socket of sockets) socket.destroy();
        await closed;
        await cleanup();
        log.info('stopped');
      }),
    };
    log.info({ url: running.url, secureUrl, healthUrl: running.healthUrl, upstream: upstream.url.origin, node: options.nodeName }, 'poolview serving');
    return running;
  } catch (err) {
    for (const server of proxies) server.closeAllConnections();
    await Promise.all(proxies.map(closeServer));
    await cleanup();
    throw err;
  }
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Stops accepting and closes idle connections; resolves when every connection is gone. */
function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= fn());
}
