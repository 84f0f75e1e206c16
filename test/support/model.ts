// The randomized model test of the view contract (docs/design.md): random writes, scope changes, ConfigMap
// changes, client disconnects, upstream watch drops and compactions, with client-go style
// reflectors reading through poolview, checked against a reference model at every quiet point.
import { applyChain, type KubeObject, type Scope } from '../../filters/types.js';
import { builtinFilters } from '../../filters/index.js';
import { Targeting } from '../../src/targeting.js';
import { ClientReflector, contentOf, keyOf } from './client-reflector.js';

/** How the model writes to the cluster: the fake apiserver or a real one. */
export interface ModelDriver {
  put(resource: 'services' | 'endpointslices' | 'configmaps', obj: KubeObject): Promise<void>;
  remove(resource: 'services' | 'endpointslices', namespace: string, name: string): Promise<void>;
  setPoolNodes(pool: string, nodes: string[]): Promise<void>;
  /** The Node's apps.openyurt.io/nodepool label, as yurt-manager keeps it with the NodePools. */
  setNodePool(node: string, pool: string | undefined): Promise<void>;
  /** Current upstream objects, unfiltered. */
  list(resource: 'services' | 'endpointslices'): Promise<KubeObject[]>;
  compact?(): Promise<void>;
  dropWatches?(): Promise<void>;
}

export interface ModelOptions {
  driver: ModelDriver;
  proxyUrl: string;
  nodeName: string;
  namespace: string;
  seed: number;
  steps: number;
  /** Pools and their initial members; the proxy's node must be in one of them. */
  pools: Record<string, string[]>;
  tokens?: { kubeProxy?: string; admin?: string };
  quietEvery?: number;
  log?: (msg: string) => void;
}

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LISTEN = [undefined, 'A', 'B', 'A,B', '-A,*', '*', '', 'C'];
const TOPOLOGY = [undefined, 'kubernetes.io/hostname', 'openyurt.io/nodepool', 'kubernetes.io/zone'];
const SERVICES = 8;

export async function runModel(opts: ModelOptions): Promise<{ events: number; relists: number; checks: number }> {
  const rand = mulberry32(opts.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const pools = Object.fromEntries(Object.entries(opts.pools).map(([p, n]) => [p, [...n]]));
  const nodes = Object.values(pools).flat();
  let configMap: Record<string, string> = {};
  const ns = opts.namespace;
  const ctx = `seed=${opts.seed}`;

  const clients = [
    { ua: 'kube-proxy/v1.35.4 (linux/amd64) kubernetes/model', resource: 'services', path: '/api/v1/services', mode: 'classic' },
    { ua: 'kube-proxy/v1.35.4 (linux/amd64) kubernetes/model', resource: 'endpointslices', path: '/apis/discovery.k8s.io/v1/endpointslices', mode: 'watchlist' },
    { ua: 'coredns/1.12', resource: 'endpointslices', path: `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`, mode: 'classic' },
    { ua: 'cilium-agent/1.18', resource: 'services', path: `/api/v1/namespaces/${ns}/services`, mode: 'watchlist' },
    { ua: 'cilium-agent/1.18', resource: 'endpointslices', path: '/apis/discovery.k8s.io/v1/endpointslices', mode: 'classic' },
  ].map((c) => ({
    ...c,
    component: c.ua.split('/')[0],
    reflector: new ClientReflector({
      baseUrl: opts.proxyUrl,
      path: c.path,
      userAgent: c.ua,
      token: opts.tokens?.admin,
      mode: c.mode as 'classic' | 'watchlist',
      timeoutSeconds: () => 1 + Math.floor(rand() * 4),
    }),
  }));

  const scopeOf = (services: KubeObject[]): Scope => ({
    nodeName: opts.nodeName,
    nodePool: Object.keys(pools).find((p) => pools[p].includes(opts.nodeName)),
    poolMembers: (pool) => (pools[pool] ? new Set(pools[pool]) : undefined),
    poolOf: (node) => Object.keys(pools).find((p) => pools[p].includes(node)),
    service: (namespace, name) => services.find((s) => s.metadata.namespace === namespace && s.metadata.name === name),
    endpointPools: () => undefined,
    gate: (name) => name === 'ViewTransitions',
  });

  async function expected(component: string, resource: string): Promise<Map<string, KubeObject>> {
    const targeting = new Targeting(builtinFilters);
    targeting.setConfigMap(configMap);
    const services = await opts.driver.list('services');
    const scope = scopeOf(services);
    const objects = resource === 'services' ? services : await opts.driver.list('endpointslices');
    const chain = targeting.filtersFor(component, resource, 'watch');
    const out = new Map<string, KubeObject>();
    for (const obj of objects) {
      if (obj.metadata.namespace !== ns) continue;
      const kept = applyChain(chain, obj, scope);
      if (kept) out.set(keyOf(kept as never), kept);
    }
    return out;
  }

  let checks = 0;
  async function quiet(label: string): Promise<void> {
    checks++;
    // A streaming list restarted by a scope change waits for the watch cache to prove itself fresh
    // (a probe bookmark, 0.7–1.9 s on kube-apiserver), once per restart.
    const deadline = Date.now() + 15_000;
    for (;;) {
      const diffs: string[] = [];
      for (const c of clients) {
        const want = await expected(c.component, c.resource);
        const have = new Map([...c.reflector.cache].filter(([, o]) => o.metadata.namespace === ns));
        for (const [k, o] of want) {
          const h = have.get(k);
          if (!h) diffs.push(`${c.component} ${c.resource}: missing ${k}`);
          else if (contentOf(h) !== contentOf(o as never)) diffs.push(`${c.component} ${c.resource}: stale ${k}\n  have ${contentOf(h)}\n  want ${contentOf(o as never)}`);
        }
        for (const k of have.keys()) if (!want.has(k)) diffs.push(`${c.component} ${c.resource}: extra ${k}`);
      }
      const violations = clients.flatMap((c) => c.reflector.violations);
      if (violations.length) throw new Error(`${ctx} ${label}: contract violations:\n${violations.join('\n')}`);
      if (diffs.length === 0) return;
      if (Date.now() > deadline) {
        const stats = clients.map((c) => `${c.component} ${c.resource}: relists=${c.reflector.relists} rewatches=${c.reflector.rewatches} lastSync=${c.reflector.lastSync}`);
        throw new Error(`${ctx} ${label}: caches did not converge:\n${diffs.slice(0, 10).join('\n')}\n${stats.join('\n')}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  function service(i: number): KubeObject {
    const listen = pick(LISTEN);
    const topology = pick(TOPOLOGY);
    const annotations: Record<string, string> = {};
    if (listen !== undefined) annotations['nodeport.openyurt.io/listen'] = listen;
    if (topology !== undefined) annotations['openyurt.io/topologyKeys'] = topology;
    const type = rand() < 0.7 ? 'NodePort' : 'ClusterIP';
    return {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: `svc${i}`, namespace: ns, annotations },
      spec: { type, selector: { app: `svc${i}` }, ports: [{ name: 'http', port: 80 + i, protocol: 'TCP', targetPort: 8080 }] },
    };
  }

  function slice(i: number): KubeObject {
    const eps = nodes.filter(() => rand() < 0.5).map((node, j) => ({
      addresses: [`10.244.${nodes.indexOf(node)}.${i * 10 + j + 1}`],
      conditions: { ready: rand() < 0.9 },
      nodeName: node,
    }));
    return {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: `svc${i}-abc`, namespace: ns, labels: { 'kubernetes.io/service-name': `svc${i}` } },
      addressType: 'IPv4',
      endpoints: eps,
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    };
  }

  for (const [pool, members] of Object.entries(pools)) {
    await opts.driver.setPoolNodes(pool, members);
    for (const node of members) await opts.driver.setNodePool(node, pool);
  }
  const putConfigMap = () =>
    opts.driver.put('configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'yurt-hub-cfg', namespace: 'kube-system' }, data: configMap });
  await putConfigMap();
  for (const c of clients) c.reflector.start();
  const exists = { services: new Set<number>(), endpointslices: new Set<number>() };
  try {
    await quiet('start');
    for (let step = 0; step < opts.steps; step++) {
      const r = rand();
      const i = Math.floor(rand() * SERVICES);
      if (r < 0.3) {
        if (exists.services.has(i) && rand() < 0.15) {
          await opts.driver.remove('services', ns, `svc${i}`);
          exists.services.delete(i);
        } else {
          await opts.driver.put('services', service(i));
          exists.services.add(i);
        }
      } else if (r < 0.6) {
        if (exists.endpointslices.has(i) && rand() < 0.15) {
          await opts.driver.remove('endpointslices', ns, `svc${i}-abc`);
          exists.endpointslices.delete(i);
        } else {
          await opts.driver.put('endpointslices', slice(i));
          exists.endpointslices.add(i);
        }
      } else if (r < 0.7) {
        const node = pick(nodes);
        const from = Object.keys(pools).find((p) => pools[p].includes(node));
        const to = pick(Object.keys(pools));
        if (from) pools[from] = pools[from].filter((n) => n !== node);
        const joins = rand() < 0.9;
        if (joins) pools[to].push(node);
        await opts.driver.setNodePool(node, joins ? to : undefined);
        if (from) await opts.driver.setPoolNodes(from, pools[from]);
        await opts.driver.setPoolNodes(to, pools[to]);
      } else if (r < 0.76) {
        configMap = {};
        if (rand() < 0.5) configMap.servicetopology = pick(['cilium-agent', 'Cilium-Agent/1.18, other', '']);
        if (rand() < 0.5) configMap.filter_nodeportisolation = pick(['cilium-agent', ' cilium-agent ']);
        await putConfigMap();
      } else if (r < 0.86) {
        pick(clients).reflector.disconnect();
      } else if (r < 0.9 && opts.driver.dropWatches) {
        await opts.driver.dropWatches();
      } else if (r < 0.92 && opts.driver.compact) {
        await opts.driver.compact();
      }
      if (rand() < 0.3) await new Promise((res) => setTimeout(res, Math.floor(rand() * 5)));
      if ((step + 1) % (opts.quietEvery ?? 25) === 0) await quiet(`step ${step + 1}`);
    }
    await quiet('end');
  } finally {
    await Promise.all(clients.map((c) => c.reflector.stop()));
  }
  const relists = clients.reduce((n, c) => n + c.reflector.relists, 0);
  opts.log?.(`${ctx}: ${opts.steps} steps, ${checks} quiet points, ${relists} re-lists`);
  return { events: opts.steps, relists, checks };
}
