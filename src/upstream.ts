// The apiserver poolview talks to, built from a kubeconfig or the in-cluster config.
// Two dispatchers keep identities apart: clients' requests go out with the cluster CA only (a client
// gets no more rights through poolview than without it); poolview's own requests also present
// poolview's client certificate and bearer token.
import { Agent } from 'undici';
import type { Dispatcher } from 'undici';
import { inClusterConfig, KubeconfigError, kubeconfigFromFile, type ApiserverConfig } from './kubeconfig.js';
import type { Upstream } from './types.js';

/** The kubeconfig or in-cluster config cannot be used; the CLI prints the message and exits 2. */
export class UpstreamConfigError extends Error {
  override name = 'UpstreamConfigError';
}

export interface TlsMaterial {
  ca?: Buffer;
  /** poolview's client certificate and key; only ever presented on poolview's own requests. */
  cert?: Buffer;
  key?: Buffer;
  servername?: string;
  /** false only when the kubeconfig says insecure-skip-tls-verify. */
  rejectUnauthorized?: boolean;
}

/** Where to open a raw connection for an upgrade tunnel (exec, attach, port-forward). */
export interface TunnelTarget {
  host: string;
  port: number;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer; servername?: string; rejectUnauthorized?: boolean };
}

export interface KubeUpstream extends Upstream {
  tunnelTarget(own: boolean): TunnelTarget;
  close(): Promise<void>;
}

/** A raw connection target for a server URL; tls applies only to https:// servers. */
export function tunnelTargetFor(url: URL, tls: NonNullable<TunnelTarget['tls']> = {}): TunnelTarget {
  const https = url.protocol === 'https:';
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(url.port) || (https ? 443 : 80), ...(https ? { tls } : {}) };
}

export function hasTunnelTarget(upstream: Upstream): upstream is Upstream & Pick<KubeUpstream, 'tunnelTarget'> {
  return typeof (upstream as Partial<KubeUpstream>).tunnelTarget === 'function';
}

/** How often own credentials are re-read (exec plugins and projected token files rotate). */
const CREDENTIAL_REFRESH_MS = 30_000;

/** A connection to the apiserver that is not up within this long fails (and is retried). */
export const UPSTREAM_CONNECT_TIMEOUT_MS = 10_000;
/**
 * TCP keepalive on every upstream connection: the first probe after 15 s of silence, then libuv's
 * 10 probes 1 s apart, so a watch whose connection died silently (an edge link gone, a NAT entry
 * dropped) fails within about 25 s instead of the kernel's default of more than two hours.
 */
export const UPSTREAM_KEEPALIVE_IDLE_MS = 15_000;

function createAgent(url: URL, tls: TlsMaterial, withClientCert: boolean): Agent {
  return new Agent({
    // Watches and exec sessions live for minutes or hours: each request sets its own bounds.
    headersTimeout: 0,
    bodyTimeout: 0,
    keepAliveTimeout: 30_000,
    connect: {
      timeout: UPSTREAM_CONNECT_TIMEOUT_MS,
      keepAlive: true,
      keepAliveInitialDelay: UPSTREAM_KEEPALIVE_IDLE_MS,
      ...(url.protocol === 'https:'
        ? {
            ca: tls.ca,
            cert: withClientCert ? tls.cert : undefined,
            key: withClientCert ? tls.key : undefined,
            servername: tls.servername,
            rejectUnauthorized: tls.rejectUnauthorized,
          }
        : {}),
    },
  });
}

class DispatcherPair implements KubeUpstream {
  readonly url: URL;
  private tls: TlsMaterial;
  private client: Agent;
  private own: Agent;
  private headers: Record<string, string>;
  private timer: NodeJS.Timeout | undefined;

  constructor(url: URL, tls: TlsMaterial, headers: Record<string, string>) {
    this.url = url;
    this.tls = tls;
    this.headers = headers;
    this.client = createAgent(url, tls, false);
    this.own = createAgent(url, tls, true);
  }

  get clientDispatcher(): Dispatcher {
    return this.client;
  }

  get ownDispatcher(): Dispatcher {
    return this.own;
  }

  ownHeaders(): Record<string, string> {
    return { ...this.headers };
  }

  tunnelTarget(own: boolean): TunnelTarget {
    const { ca, cert, key, servername, rejectUnauthorized } = this.tls;
    return tunnelTargetFor(this.url, { ca, servername, rejectUnauthorized, ...(own ? { cert, key } : {}) });
  }

  /** Takes freshly read credentials; new dispatchers only when TLS material changed (rotated certs). */
  update(tls: TlsMaterial, headers: Record<string, string>): void {
    this.headers = headers;
    if (sameTls(tls, this.tls)) return;
    const old = [this.client, this.own];
    this.tls = tls;
    this.client = createAgent(this.url, tls, false);
    this.own = createAgent(this.url, tls, true);
    // Requests in flight (long watches included) finish on the old connections.
    for (const agent of old) void agent.close().catch(() => {});
  }

  refreshEvery(ms: number, refresh: () => Promise<void>): void {
    this.timer = setInterval(() => void refresh().catch(() => {}), ms);
    this.timer.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all([this.client.destroy(), this.own.destroy()]);
  }
}

function sameBuffer(a: Buffer | undefined, b: Buffer | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && a.equals(b));
}

function sameTls(a: TlsMaterial, b: TlsMaterial): boolean {
  return (
    sameBuffer(a.ca, b.ca) &&
    sameBuffer(a.cert, b.cert) &&
    sameBuffer(a.key, b.key) &&
    a.servername === b.servername &&
    a.rejectUnauthorized === b.rejectUnauthorized
  );
}

function parseServer(server: string, where: string): URL {
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new UpstreamConfigError(`${where}: server "${server}" is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new UpstreamConfigError(`${where}: server "${server}" is neither https:// nor http://`);
  }
  url.pathname = url.pathname.replace(/\/+$/, '');
  url.search = '';
  url.hash = '';
  return url;
}

/** An upstream for a plain URL, e.g. the in-process fake apiserver in tests and the demo. */
export function upstreamFromUrl(url: string, token?: string, tls: TlsMaterial = {}): KubeUpstream {
  return new DispatcherPair(parseServer(url, 'upstream'), tls, token ? { authorization: `Bearer ${token}` } : {});
}

/**
 * An upstream for the current context of a kubeconfig (or its context `context`), or for the
 * in-cluster config when no path is given. Own credentials (client certificate, token, exec plugin,
 * token file) are re-read periodically.
 */
export async function upstreamFromKubeconfig(path?: string, context?: string): Promise<KubeUpstream> {
  if (!path && context !== undefined) throw new UpstreamConfigError(`--context ${context} needs a kubeconfig (--kubeconfig or KUBECONFIG)`);
  if (!path && (!process.env.KUBERNETES_SERVICE_HOST || !process.env.KUBERNETES_SERVICE_PORT)) {
    throw new UpstreamConfigError('no --kubeconfig (or KUBECONFIG) given and not running in a cluster (KUBERNETES_SERVICE_HOST/PORT unset)');
  }
  let config: ApiserverConfig;
  try {
    config = path ? kubeconfigFromFile(path, context) : inClusterConfig();
  } catch (err) {
    throw err instanceof KubeconfigError ? new UpstreamConfigError(err.message) : err;
  }
  const url = parseServer(config.server, config.where);

  const readCredentials = async (): Promise<{ tls: TlsMaterial; headers: Record<string, string> }> => {
    const { ca, cert, key, servername, insecure, authorization } = await config.read();
    return {
      // http:// has no TLS to verify.
      tls: { ca, cert, key, servername, rejectUnauthorized: url.protocol === 'https:' && insecure ? false : undefined },
      headers: authorization ? { authorization } : {},
    };
  };

  let first;
  try {
    first = await readCredentials();
  } catch (err) {
    const text = (err instanceof Error ? err.message : String(err)).split('\n')[0].trim();
    throw new UpstreamConfigError(`${config.where}: cannot load credentials: ${text}`);
  }
  const upstream = new DispatcherPair(url, first.tls, first.headers);
  upstream.refreshEvery(CREDENTIAL_REFRESH_MS, async () => {
    const next = await readCredentials();
    upstream.update(next.tls, next.headers);
  });
  return upstream;
}
