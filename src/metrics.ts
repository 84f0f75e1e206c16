// Prometheus metrics of the proxy. Label values are bounded: a component or resource outside the
// known lists is counted as "other", so a client cannot grow the series count with odd names.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export { Registry };

const KNOWN_COMPONENTS = new Set([
  'kube-proxy', 'coredns', 'cilium-agent', 'cilium', 'nginx-ingress-controller', 'kubelet', 'kubectl',
  'flanneld', 'calico-node', 'kube-router', 'antrea-agent', 'raven-agent-ds', 'yurttunnel-agent', 'yurthub',
  'node-problem-detector', 'kube-controller-manager', 'kube-scheduler', 'poolview',
]);

const KNOWN_RESOURCES = new Set([
  'pods', 'services', 'endpoints', 'endpointslices', 'nodes', 'namespaces', 'configmaps', 'secrets',
  'serviceaccounts', 'events', 'leases', 'persistentvolumes', 'persistentvolumeclaims', 'replicasets',
  'deployments', 'daemonsets', 'statefulsets', 'jobs', 'cronjobs', 'ingresses', 'ingressclasses',
  'networkpolicies', 'runtimeclasses', 'csidrivers', 'csinodes', 'storageclasses', 'volumeattachments',
  'certificatesigningrequests', 'tokenreviews', 'subjectaccessreviews', 'selfsubjectaccessreviews',
  'customresourcedefinitions', 'nodepools', 'yurtappsets', 'ciliumendpoints', 'ciliumnodes',
  'ciliumidentities', 'ciliumnetworkpolicies', 'ciliumclusterwidenetworkpolicies',
]);

const KNOWN_VERBS = new Set(['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection', 'proxy']);

export function componentLabel(component: string | undefined): string {
  if (component === undefined) return 'none';
  return KNOWN_COMPONENTS.has(component) ? component : 'other';
}

export function resourceLabel(resource: string, isResourceRequest: boolean): string {
  if (!isResourceRequest) return 'nonresource';
  return KNOWN_RESOURCES.has(resource) ? resource : 'other';
}

export function verbLabel(verb: string): string {
  return KNOWN_VERBS.has(verb) ? verb : 'other';
}

export interface ProxyMetrics {
  registry: Registry;
  requestsInFlight: Gauge<'component' | 'verb' | 'resource'>;
  requestsTotal: Counter<'component' | 'verb' | 'resource' | 'code'>;
  requestDuration: Histogram<'verb'>;
  proxiedBytes: Counter<'direction'>;
  openWatches: Gauge<'component' | 'resource'>;
  upstreamUp: Gauge;
}

export function createMetrics(registry = new Registry()): ProxyMetrics {
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    requestsInFlight: new Gauge({
      name: 'poolview_requests_in_flight',
      help: 'Client requests being served, watches included.',
      labelNames: ['component', 'verb', 'resource'],
      registers: [registry],
    }),
    requestsTotal: new Counter({
      name: 'poolview_requests_total',
      help: 'Client requests served, by response code (0 = no response was sent).',
      labelNames: ['component', 'verb', 'resource', 'code'],
      registers: [registry],
    }),
    requestDuration: new Histogram({
      name: 'poolview_request_duration_seconds',
      help: 'Time to serve a client request other than a watch.',
      labelNames: ['verb'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    proxiedBytes: new Counter({
      name: 'poolview_proxied_bytes_total',
      help: 'Body bytes passed through unchanged: upstream = client to apiserver, downstream = apiserver to client.',
      labelNames: ['direction'],
      registers: [registry],
    }),
    openWatches: new Gauge({
      name: 'poolview_open_watches',
      help: 'Watches open to clients.',
      labelNames: ['component', 'resource'],
      registers: [registry],
    }),
    upstreamUp: new Gauge({
      name: 'poolview_upstream_up',
      help: '1 when the last readiness probe of the apiserver succeeded.',
      registers: [registry],
    }),
  };
}

/** The serving certificate of the secure port (see serving-cert.ts). */
export interface ServingCertificateMetrics {
  rotations: Counter;
  /** Where the expiry gauge reads the certificate being served at scrape time. */
  setSource(current: () => { notAfter: number } | undefined): void;
}

export function createServingCertificateMetrics(registry: Registry): ServingCertificateMetrics {
  let current: () => { notAfter: number } | undefined = () => undefined;
  new Gauge({
    name: 'poolview_serving_certificate_expiry_seconds',
    help: 'Seconds until the serving certificate of the secure port expires (0 while there is none).',
    registers: [registry],
    collect() {
      const pair = current();
      this.set(pair ? Math.max(0, (pair.notAfter - Date.now()) / 1000) : 0);
    },
  });
  return {
    rotations: new Counter({
      name: 'poolview_serving_certificate_rotations_total',
      help: 'Serving certificates put in service (the first one included).',
      registers: [registry],
    }),
    setSource: (fn) => (current = fn),
  };
}

/**
 * /readyz as metrics, read at scrape time (alerts: not ready, scope sources stale). A synced scope
 * source keeps passing while its list/watch fails and is retried: only the error gauge shows that.
 */
export function registerReadinessMetrics(registry: Registry, checks: () => Array<{ name: string; ok: boolean; detail?: string }>): void {
  const gauge = (name: string, help: string, value: (check: { ok: boolean; detail?: string }) => boolean) =>
    new Gauge({
      name,
      help,
      labelNames: ['check'],
      registers: [registry],
      collect() {
        this.reset(); // a check that went away (e.g. "shutdown") must not linger
        for (const c of checks()) this.set({ check: c.name }, value(c) ? 1 : 0);
      },
    });
  gauge('poolview_readyz_check', '1 when the /readyz check passes, 0 when it fails (the checks of /readyz?verbose).', (c) => c.ok);
  gauge('poolview_readyz_check_error', '1 while the /readyz check reports an error, passing or not (a synced scope source whose watch keeps failing).', (c) => c.detail !== undefined);
}

/** The watch cache (src/cache/): one upstream stream per resource, the clients it serves. */
export interface CacheMetrics {
  upstreamBytes: Counter<'resource'>;
  upstreamEvents: Counter<'resource'>;
  clientsServed: Counter<'resource' | 'verb'>;
  slowClientsCut: Counter<'resource'>;
  setSource(read: () => Array<{ resource: string; rv: number; history: number }>): void;
}

export function createCacheMetrics(registry: Registry): CacheMetrics {
  let read: () => Array<{ resource: string; rv: number; history: number }> = () => [];
  new Gauge({
    name: 'poolview_cache_resource_version',
    help: 'The revision each cached resource is exact at.',
    labelNames: ['resource'],
    registers: [registry],
    collect() {
      for (const c of read()) this.set({ resource: c.resource }, c.rv);
    },
  });
  new Gauge({
    name: 'poolview_cache_history_events',
    help: 'Events kept for resuming watches, per cached resource (bounded by --watch-cache-history).',
    labelNames: ['resource'],
    registers: [registry],
    collect() {
      for (const c of read()) this.set({ resource: c.resource }, c.history);
    },
  });
  return {
    upstreamBytes: new Counter({ name: 'poolview_cache_upstream_bytes_total', help: 'Bytes the apiserver sent the cache (LISTs, watches, freshness probes), as on the wire.', labelNames: ['resource'], registers: [registry] }),
    upstreamEvents: new Counter({ name: 'poolview_cache_upstream_events_total', help: 'Objects and watch events the cache received from the apiserver.', labelNames: ['resource'], registers: [registry] }),
    clientsServed: new Counter({ name: 'poolview_cache_requests_served_total', help: 'Requests answered from the cache (clients, the view engine, the scope sources).', labelNames: ['resource', 'verb'], registers: [registry] }),
    slowClientsCut: new Counter({ name: 'poolview_cache_slow_watches_ended_total', help: 'Watches ended because their client fell too far behind.', labelNames: ['resource'], registers: [registry] }),
    setSource: (fn) => (read = fn),
  };
}
