// poolview's options: one table of flags with their environment twins, the defaults, and the
// validation done once at boot. The CLI and startPoolview() both go through resolveOptions().
import { isIP } from 'node:net';
import { LOG_LEVELS } from './log.js';
import { builtinFilters, type WorkingMode } from '../filters/index.js';

export type AnonymousRequests = 'forward' | 'reject' | 'proxy-identity';

export interface PoolviewOptions {
  /** Kubeconfig with the apiserver and poolview's own credentials; undefined = in-cluster config. */
  kubeconfig?: string;
  nodeName: string;
  bindAddress: string;
  port: number;
  securePort?: number;
  tlsCertFile?: string;
  tlsPrivateKeyFile?: string;
  /** Get the serving certificate from the CertificateSigningRequest API (signer kubernetes.io/kubelet-serving) and renew it. */
  rotateServerCertificates: boolean;
  /** Where the issued certificate and its key are kept across restarts. */
  certDir: string;
  healthPort: number;
  /** Where the health port listens; it may differ from the proxy's (a scraper sees /metrics only). */
  healthBindAddress: string;
  logLevel: string;
  /** What to do with a client request that carries no Authorization header. */
  anonymousRequests: AnonymousRequests;
  nodePoolName?: string;
  configMapName: string;
  configMapNamespace: string;
  featureGates: Record<string, boolean>;
  /** The address in-cluster clients reach poolview at is the dummy interface's (`dummyIfIp`), not bindAddress. */
  enableDummyIf: boolean;
  /** Default: 169.254.2.1, fd00::2:1 when bindAddress is IPv6. */
  dummyIfIp?: string;
  /** Filters that never run (`*` = all), as yurt-hub's --disabled-resource-filters. */
  disabledFilters: string[];
  /** cloud: the edge-only filters are off, as in yurt-hub. */
  workingMode: WorkingMode;
  /** How long a scope change's transitions, and a LIST after one, wait for a revision past the change. */
  scopeChangeWaitMs: number;
  /** Events kept per cached resource for watches that resume and Exact lists. */
  watchCacheHistory: number;
  /** How long an answer of the apiserver to "may this client do this" is reused, in ms. */
  authorizationCacheTtlMs: number;
}

/** yurt-hub's dummy interface address for an IPv6 node. */
export const DUMMY_IF_IPV6 = 'fd00::2:1';

export const DEFAULTS = {
  bindAddress: '127.0.0.1',
  port: 10261,
  securePort: 10268,
  healthPort: 10267,
  certDir: '/var/lib/poolview/pki',
  logLevel: 'info',
  anonymousRequests: 'forward' as AnonymousRequests,
  configMapName: 'yurt-hub-cfg',
  configMapNamespace: 'kube-system',
  dummyIfIp: '169.254.2.1',
  workingMode: 'edge' as WorkingMode,
  scopeChangeWaitMs: 1000,
  watchCacheHistory: 10_000,
  authorizationCacheTtlMs: 10_000,
};

/** A mistake in how poolview was invoked; the CLI prints its message alone and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export interface FlagSpec {
  flag: string;
  env?: string;
  key: keyof PoolviewOptions;
  type: 'string' | 'port' | 'gates' | 'bool' | 'list' | 'count' | 'duration';
  help: string;
}

export const FLAGS: readonly FlagSpec[] = [
  { flag: 'kubeconfig', env: 'KUBECONFIG', key: 'kubeconfig', type: 'string', help: 'kubeconfig of the apiserver and poolview\'s own credentials (default: in-cluster config)' },
  { flag: 'node-name', env: 'NODE_NAME', key: 'nodeName', type: 'string', help: 'name of the node this poolview serves (required)' },
  { flag: 'nodepool-name', env: 'NODEPOOL_NAME', key: 'nodePoolName', type: 'string', help: 'node pool of this node (default: the Node\'s apps.openyurt.io/nodepool label)' },
  { flag: 'bind-address', env: 'POOLVIEW_BIND_ADDRESS', key: 'bindAddress', type: 'string', help: `address to listen on (default ${DEFAULTS.bindAddress})` },
  { flag: 'port', env: 'POOLVIEW_PORT', key: 'port', type: 'port', help: `plain HTTP proxy port (default ${DEFAULTS.port}; 0 = any free port)` },
  { flag: 'secure-port', env: 'POOLVIEW_SECURE_PORT', key: 'securePort', type: 'port', help: `HTTPS proxy port, served when a certificate is given or requested (default ${DEFAULTS.securePort})` },
  { flag: 'tls-cert-file', env: 'POOLVIEW_TLS_CERT_FILE', key: 'tlsCertFile', type: 'string', help: 'serving certificate (PEM) for the secure port' },
  { flag: 'tls-private-key-file', env: 'POOLVIEW_TLS_PRIVATE_KEY_FILE', key: 'tlsPrivateKeyFile', type: 'string', help: 'serving private key (PEM) for the secure port; both files are reloaded when they change' },
  { flag: 'rotate-server-certificates', env: 'POOLVIEW_ROTATE_SERVER_CERTIFICATES', key: 'rotateServerCertificates', type: 'bool', help: 'request the serving certificate with a CertificateSigningRequest (signer kubernetes.io/kubelet-serving) and renew it, as the kubelet does, instead of --tls-cert-file (default false)' },
  { flag: 'cert-dir', env: 'POOLVIEW_CERT_DIR', key: 'certDir', type: 'string', help: `where --rotate-server-certificates keeps the issued certificate and key (default ${DEFAULTS.certDir})` },
  { flag: 'health-port', env: 'POOLVIEW_HEALTH_PORT', key: 'healthPort', type: 'port', help: `port of /healthz /livez /readyz /metrics (default ${DEFAULTS.healthPort})` },
  { flag: 'health-bind-address', env: 'POOLVIEW_HEALTH_BIND_ADDRESS', key: 'healthBindAddress', type: 'string', help: 'address the health port listens on (default: --bind-address)' },
  { flag: 'log-level', env: 'POOLVIEW_LOG_LEVEL', key: 'logLevel', type: 'string', help: `${LOG_LEVELS.join('|')} (default ${DEFAULTS.logLevel})` },
  { flag: 'anonymous-requests', env: 'POOLVIEW_ANONYMOUS_REQUESTS', key: 'anonymousRequests', type: 'string', help: 'requests without credentials: forward (as they are) | reject (401) | proxy-identity (with poolview\'s credentials; loopback bind only) (default forward)' },
  { flag: 'configmap-name', env: 'POOLVIEW_CONFIGMAP_NAME', key: 'configMapName', type: 'string', help: `ConfigMap that adds components to filters (default ${DEFAULTS.configMapName})` },
  { flag: 'configmap-namespace', env: 'POOLVIEW_CONFIGMAP_NAMESPACE', key: 'configMapNamespace', type: 'string', help: `namespace of that ConfigMap (default ${DEFAULTS.configMapNamespace})` },
  { flag: 'watch-cache-history', env: 'POOLVIEW_WATCH_CACHE_HISTORY', key: 'watchCacheHistory', type: 'count', help: `events kept per cached resource: watches resuming from older resourceVersions get 410 Expired (default ${DEFAULTS.watchCacheHistory})` },
  { flag: 'authorization-cache-ttl', env: 'POOLVIEW_AUTHORIZATION_CACHE_TTL', key: 'authorizationCacheTtlMs', type: 'duration', help: 'how long the apiserver\'s answer to a client\'s SelfSubjectAccessReview is reused for answers from the cache, e.g. 10s, 1m (default 10s)' },
  { flag: 'feature-gates', env: 'POOLVIEW_FEATURE_GATES', key: 'featureGates', type: 'gates', help: 'comma list of Name=true|false' },
  { flag: 'enable-dummy-if', env: 'POOLVIEW_ENABLE_DUMMY_IF', key: 'enableDummyIf', type: 'bool', help: 'tell in-cluster clients (masterservice, serviceenvupdater, forwardkubesvctraffic) to reach poolview at --dummy-if-ip instead of --bind-address; poolview creates no interface (default false)' },
  { flag: 'dummy-if-ip', env: 'POOLVIEW_DUMMY_IF_IP', key: 'dummyIfIp', type: 'string', help: `that address (default ${DEFAULTS.dummyIfIp}, ${DUMMY_IF_IPV6} with an IPv6 --bind-address)` },
  { flag: 'disabled-filters', env: 'POOLVIEW_DISABLED_FILTERS', key: 'disabledFilters', type: 'list', help: `comma list of filters that never run, * = all (filters: ${builtinFilters.map((f) => f.name).join(', ')})` },
  { flag: 'working-mode', env: 'POOLVIEW_WORKING_MODE', key: 'workingMode', type: 'string', help: 'edge | cloud (cloud: discardcloudservice, forwardkubesvctraffic, serviceenvupdater are off, as in yurt-hub) (default edge)' },
  { flag: 'scope-change-wait', env: 'POOLVIEW_SCOPE_CHANGE_WAIT', key: 'scopeChangeWaitMs', type: 'duration', help: 'how long a scope change\'s MODIFIED events wait for an upstream revision past the change before falling back to DELETED+ADDED, and a LIST after a change for a newer revision (default 1s; 0 = never wait)' },
];

export function parsePort(value: string, what: string): number {
  if (!/^\d+$/.test(value.trim())) throw new UsageError(`${what}: "${value}" is not a port number`);
  const port = Number(value);
  if (port > 65535) throw new UsageError(`${what}: ${port} is out of range 0-65535`);
  return port;
}

/** A node:util parseArgs error in the words of poolview's other usage errors. */
export function describeParseError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const flag = /'(-{1,2}[^' ]+)/.exec(e.message ?? '')?.[1];
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown flag ${flag ?? ''}`.trim();
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return flag ? `${flag} needs a value` : 'a flag is missing its value';
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument "${/'([^']*)'/.exec(e.message ?? '')?.[1] ?? ''}"`;
    default:
      return (e.message ?? String(err)).split('\n')[0];
  }
}

/** true|false, as Kubernetes components take boolean flags. */
export function parseBool(value: string, what: string): boolean {
  const v = value.trim().toLowerCase();
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new UsageError(`${what}: "${value}" is not true or false`);
}

/** A positive whole number. */
export function parseCount(value: string, what: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1) throw new UsageError(`${what}: "${value}" is not a positive whole number`);
  return Number(value);
}

/** A duration as Kubernetes components take it (500ms, 10s, 1m, 1h30m), in milliseconds. */
export function parseDuration(value: string, what: string): number {
  const v = value.trim();
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  if (v === '0') return 0;
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(v)) throw new UsageError(`${what}: "${value}" is not a duration like 10s or 1m`);
  let ms = 0;
  for (const m of v.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(m[1]) * units[m[2]];
  return Math.round(ms);
}

/** poolview's feature gates and their defaults. */
export const FEATURE_GATES: Record<string, { default: boolean; help: string }> = {
  NodePortAutoListen: { default: false, help: 'nodeport.openyurt.io/auto-listen: "true" listens on the pools where the endpoints run' },
  ViewTransitions: { default: true, help: 'send DELETED/ADDED/MODIFIED when scope changes move objects (off = yurt-hub before v1.5)' },
};

/** `A=true,B=false` as Kubernetes components take --feature-gates; unknown gates are an error. */
export function parseFeatureGates(value: string, what = '--feature-gates'): Record<string, boolean> {
  const gates: Record<string, boolean> = {};
  for (const entry of value.split(',')) {
    const trimmed = entry.trim();
    if (trimmed === '') continue;
    const m = /^([A-Za-z0-9][A-Za-z0-9_.-]*)\s*=\s*(true|false)$/i.exec(trimmed);
    if (!m) throw new UsageError(`${what}: "${trimmed}" is not Name=true|false`);
    if (!(m[1] in FEATURE_GATES)) throw new UsageError(`${what}: unknown feature gate ${m[1]} (known: ${Object.keys(FEATURE_GATES).join(', ')})`);
    gates[m[1]] = m[2].toLowerCase() === 'true';
  }
  return gates;
}

export function isLoopback(address: string): boolean {
  if (address === 'localhost') return true;
  if (isIP(address) === 4) return address.startsWith('127.');
  const v6 = address.toLowerCase();
  return v6 === '::1' || v6 === '0:0:0:0:0:0:0:1' || v6.startsWith('::ffff:127.');
}

/** Fills defaults and checks everything that can be checked without I/O. */
export function resolveOptions(input: Partial<PoolviewOptions>): PoolviewOptions {
  const opts: PoolviewOptions = {
    kubeconfig: input.kubeconfig || undefined,
    nodeName: (input.nodeName ?? '').trim(),
    nodePoolName: input.nodePoolName || undefined,
    bindAddress: input.bindAddress || DEFAULTS.bindAddress,
    port: input.port ?? DEFAULTS.port,
    tlsCertFile: input.tlsCertFile || undefined,
    tlsPrivateKeyFile: input.tlsPrivateKeyFile || undefined,
    securePort: input.securePort,
    rotateServerCertificates: input.rotateServerCertificates ?? false,
    certDir: input.certDir || DEFAULTS.certDir,
    healthPort: input.healthPort ?? DEFAULTS.healthPort,
    healthBindAddress: input.healthBindAddress || input.bindAddress || DEFAULTS.bindAddress,
    logLevel: input.logLevel || DEFAULTS.logLevel,
    anonymousRequests: input.anonymousRequests ?? DEFAULTS.anonymousRequests,
    configMapName: input.configMapName || DEFAULTS.configMapName,
    configMapNamespace: input.configMapNamespace || DEFAULTS.configMapNamespace,
    featureGates: { ...(input.featureGates ?? {}) },
    enableDummyIf: input.enableDummyIf ?? false,
    dummyIfIp: input.dummyIfIp || undefined,
    disabledFilters: [...(input.disabledFilters ?? [])],
    workingMode: input.workingMode || DEFAULTS.workingMode,
    scopeChangeWaitMs: input.scopeChangeWaitMs ?? DEFAULTS.scopeChangeWaitMs,
    watchCacheHistory: input.watchCacheHistory ?? DEFAULTS.watchCacheHistory,
    authorizationCacheTtlMs: input.authorizationCacheTtlMs ?? DEFAULTS.authorizationCacheTtlMs,
  };
  if (!Number.isFinite(opts.scopeChangeWaitMs) || opts.scopeChangeWaitMs < 0) throw new UsageError(`--scope-change-wait: ${opts.scopeChangeWaitMs} ms is not a duration`);
  if (!opts.nodeName) throw new UsageError('--node-name (or NODE_NAME) is required');
  if (!(LOG_LEVELS as readonly string[]).includes(opts.logLevel)) {
    throw new UsageError(`--log-level: "${opts.logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);
  }
  if (!['forward', 'reject', 'proxy-identity'].includes(opts.anonymousRequests)) {
    throw new UsageError(`--anonymous-requests: "${opts.anonymousRequests}" is not one of forward, reject, proxy-identity`);
  }
  // Lending poolview's identity to anonymous callers is only safe when only this host can call.
  if (opts.anonymousRequests === 'proxy-identity' && !isLoopback(opts.bindAddress)) {
    throw new UsageError(`--anonymous-requests=proxy-identity needs a loopback --bind-address, not ${opts.bindAddress}`);
  }
  if (!!opts.tlsCertFile !== !!opts.tlsPrivateKeyFile) {
    throw new UsageError('--tls-cert-file and --tls-private-key-file go together');
  }
  if (opts.tlsCertFile && opts.rotateServerCertificates) {
    throw new UsageError('--tls-cert-file and --rotate-server-certificates=true exclude each other: the certificate comes from files or from the CertificateSigningRequest API');
  }
  if (opts.tlsCertFile || opts.rotateServerCertificates) opts.securePort ??= DEFAULTS.securePort;
  else if (opts.securePort !== undefined) throw new UsageError('--secure-port needs a serving certificate: --tls-cert-file and --tls-private-key-file, or --rotate-server-certificates=true');
  for (const [what, port] of [['--port', opts.port], ['--secure-port', opts.securePort], ['--health-port', opts.healthPort]] as const) {
    if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new UsageError(`${what}: ${port} is out of range 0-65535`);
  }
  checkFilterOptions(opts);
  return opts;
}

/** --disabled-filters, --working-mode and --dummy-if-ip (also for `poolview view`). */
export function checkFilterOptions(opts: Pick<PoolviewOptions, 'disabledFilters' | 'workingMode' | 'dummyIfIp'>): void {
  const known = new Set(builtinFilters.map((f) => f.name));
  for (const name of opts.disabledFilters) {
    if (name !== '*' && !known.has(name)) throw new UsageError(`--disabled-filters: unknown filter ${JSON.stringify(name)} (known: ${[...known].join(', ')}, *)`);
  }
  if (opts.workingMode !== 'edge' && opts.workingMode !== 'cloud') throw new UsageError(`--working-mode: "${opts.workingMode}" is not edge or cloud`);
  if (opts.dummyIfIp !== undefined && isIP(opts.dummyIfIp) === 0) throw new UsageError(`--dummy-if-ip: "${opts.dummyIfIp}" is not an IP address`);
}

/**
 * The address in-cluster clients on this node reach poolview at (yurt-hub's: the dummy interface's
 * when enabled, else the bind address); undefined for a wildcard or non-IP bind address.
 */
export function proxyHost(opts: Pick<PoolviewOptions, 'enableDummyIf' | 'dummyIfIp' | 'bindAddress'>): string | undefined {
  if (opts.enableDummyIf) return opts.dummyIfIp ?? (isIP(opts.bindAddress) === 6 ? DUMMY_IF_IPV6 : DEFAULTS.dummyIfIp);
  const bind = opts.bindAddress;
  return isIP(bind) !== 0 && bind !== '0.0.0.0' && bind !== '::' ? bind : undefined;
}
