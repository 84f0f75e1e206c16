// The randomized model test of the view contract (docs/design.md): random writes, scope changes, ConfigMap
// changes, client disconnects, upstream watch drops and compactions, with client-go style
// reflectors reading through poolview, checked against a reference model at every quiet point.
import type { Registry } from 'prom-client';
import type { KubeObject } from '../../filters/types.js';
import { referenceView, type ReferenceWorld } from './reference-view.js';
import { ClientReflector, contentOf, keyOf, type ReceivedEvent } from './client-reflector.js';

/** How the model writes to the cluster: the fake apiserver or a real one. */
export interface ModelDriver {
  /** Returns the resourceVersion written, so that the model tells upstream events from synthesized ones. */
  put(resource: 'services' | 'endpointslices' | 'configmaps', obj: KubeObject): Promise<string | undefined>;
  /** Returns the deletion's resourceVersion when the driver knows it. */
  remove(resource: 'services' | 'endpointslices', namespace: string, name: string): Promise<string | undefined>;
  /** The cluster's current revision: every resourceVersion a client was given must be one (view contract (i)). */
  revision(): Promise<number>;
  /** The NodePool's status.nodes, and its annotations (per-pool feature gates). */
  setPoolNodes(pool: string, nodes: string[], annotations?: Record<string, string>): Promise<void>;
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

/** poolview's poolview_scope_change_fallbacks_total, by reason. */
export async function scopeChangeFallbacks(registry: Registry): Promise<Record<string, number>> {
  const metric = await registry.getSingleMetric('poolview_scope_change_fallbacks_total')?.get();
  return Object.fromEntries((metric?.values ?? []).map((v) => [String(v.labels.reason), v.value]));
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

/** What the model saw of the events poolview synthesized (scope-change transitions). */
export interface SynthesizedStats {
  /** Events whose resourceVersion is no write of their object. */
  synthesized: number;
  /**
   * Watches cut right after one and resumed from its resourceVersion; how many of those got 410
   * Expired; and of those, how many with no scope change written around (a later change moves the
   * revision a view must be resumed from past it, so those 410s are due).
   */
  resumed: number;
  expired: number;
  expiredUnexplained: number;
}

export async function runModel(opts: ModelOptions): Promise<{ events: number; relists: number; checks: number } & SynthesizedStats> {
  const rand = mulberry32(opts.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const pools = Object.fromEntries(Object.entries(opts.pools).map(([p, n]) => [p, [...n]]));
  const nodes = Object.values(pools).flat();
  let configMap: Record<string, string> = {};
  const ns = opts.namespace;
  const ctx = `seed=${opts.seed}`;

  // Every resourceVersion the model wrote per object ("resource|ns/name"): an event at another one
  // was synthesized by poolview. Deletions a driver cannot tell leave DELETED events unclassified.
  const written = new Map<string, Set<string>>();
  const wrote = (resource: string, namespace: string, name: string, rv: string | undefined) => {
    const k = `${resource}|${namespace}/${name}`;
    if (!written.has(k)) written.set(k, new Set());
    if (rv) written.get(k)!.add(rv);
  };
  const deletionsKnown = new Set<string>();
  const stats: SynthesizedStats = { synthesized: 0, resumed: 0, expired: 0, expiredUnexplained: 0 };
  // When the model wrote something that may change a scope (any Service, a pool, the ConfigMap) or
  // cut poolview's upstream streams.
  const scopeWrites: number[] = [];
  const scopeWrite = () => void scopeWrites.push(performance.now());
  const received: Array<ReceivedEvent & { resource: string; client: string }> = [];

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
      onEvent: (e: ReceivedEvent) => void received.push({ ...e, resource: c.resource, client: `${c.ua.split('/')[0]} ${c.path}` }),
      // Resume right after events that look synthesized (at no write of their object seen yet) and
      // are followed by one past the next revision: a change's transitions but the last go out a
      // revision below the change's, so that a client cut off among them re-lists.
      resumeAfter: (e: ReceivedEvent) => e.lastAtRevision && !written.get(`${c.resource}|${e.key}`)?.has(e.resourceVersion),
    }),
  }));

  /**
   * View contract (i)-(iv) for every synthesized event received since the last quiet point (all
   * writes acknowledged by now): (i) a real revision, (ii) a MODIFIED at a resourceVersion other
   * than the one held, (iii) a watch resumed from it is not answered 410 (counted; the test asserts
   * most are not), (iv) never backwards (checked by the reflector on every event).
   */
  async function checkSynthesized(label: string): Promise<void> {
    const revision = await opts.driver.revision();
    const problems: string[] = [];
    const synthesized = (e: { resource: string; key: string; type: string; resourceVersion: string }) => {
      const versions = written.get(`${e.resource}|${e.key}`);
      if (!versions || (e.type === 'DELETED' && !deletionsKnown.has(`${e.resource}|${e.key}`))) return false;
      return !versions.has(e.resourceVersion);
    };
    for (const e of received.splice(0)) {
      if (Number(e.resourceVersion) > revision) problems.push(`${e.client}: ${e.type} ${e.key} at ${e.resourceVersion}, past the cluster's revision ${revision}`);
      if (!synthesized(e)) continue;
      stats.synthesized++;
      if (e.type === 'MODIFIED' && e.contentChanged && e.resourceVersion === e.heldResourceVersion) {
        problems.push(`${e.client}: synthesized MODIFIED ${e.key} at the held resourceVersion ${e.resourceVersion}`);
      }
    }
    for (const c of clients) {
      const done = c.reflector.resumes.filter((r) => r.expired !== undefined);
      c.reflector.resumes.splice(0, c.reflector.resumes.length, ...c.reflector.resumes.filter((r) => r.expired === undefined));
      for (const r of done) {
        if (!synthesized({ ...r.event, resource: c.resource })) continue;
        stats.resumed++;
        if (!r.expired) continue;
        stats.expired++;
        // A change written shortly before the event was received may have been applied after it:
        // scope sources and views read through the watch cache, one more hop each, on a busy machine.
        if (!scopeWrites.some((t) => t >= r.receivedAt - 1000 && t <= r.answeredAt!)) stats.expiredUnexplained++;
      }
    }
    if (problems.length) throw new Error(`${ctx} ${label}: synthesized events break the view contract:\n${problems.slice(0, 10).join('\n')}`);
  }

  // Per-pool feature gates (the NodePool annotation), and the Services some EndpointSlice of which
  // was ever written (auto-listen).
  const poolGates: Record<string, string | undefined> = {};
  const sliced = new Set<string>();
  const gatesOf = (value: string | undefined): Record<string, boolean> =>
    Object.fromEntries((value ?? '').split(',').filter((e) => e.includes('=')).map((e) => [e.split('=')[0].trim(), e.split('=')[1].trim() === 'true']));

  async function expected(component: string, resource: 'services' | 'endpointslices'): Promise<Map<string, KubeObject>> {
    const world: ReferenceWorld = {
      node: opts.nodeName,
      pools,
      poolGates: Object.fromEntries(Object.keys(pools).map((p) => [p, gatesOf(poolGates[p])])),
      services: await opts.driver.list('services'),
      endpointSlices: await opts.driver.list('endpointslices'),
      configMap,
      slicedServices: new Set([...sliced].map((name) => `${ns}/${name}`)),
    };
    return referenceView(world, component, resource, ns);
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
        const want = await expected(c.component, c.resource as 'services' | 'endpointslices');
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
      if (diffs.length === 0) return checkSynthesized(label);
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
    else if (rand() < 0.5) annotations['nodeport.openyurt.io/auto-listen'] = pick(['true', 'True', 'false']);
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
  const put = async (resource: 'services' | 'endpointslices', obj: KubeObject) => {
    if (resource === 'services') scopeWrite();
    else sliced.add(obj.metadata.labels!['kubernetes.io/service-name']);
    wrote(resource, ns, obj.metadata.name!, await opts.driver.put(resource, obj));
  };
  const remove = async (resource: 'services' | 'endpointslices', name: string) => {
    if (resource === 'services') scopeWrite();
    const rv = await opts.driver.remove(resource, ns, name);
    if (rv) deletionsKnown.add(`${resource}|${ns}/${name}`);
    wrote(resource, ns, name, rv);
  };
  const putConfigMap = () =>
    scopeWrite() ??
    opts.driver.put('configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'yurt-hub-cfg', namespace: 'kube-system' }, data: configMap });
  await putConfigMap();
  for (const c of clients) c.reflector.start();
  const exists = { services: new Set<number>(), endpointslices: new Set<number>() };
  try {
    await quiet('start');
    for (let step = 0; step < opts.steps; step++) {
      // No write while a watch resumes from a synthesized event: a scope change meanwhile would be
      // a due reason for its 410.
      for (let waited = 0; clients.some((c) => c.reflector.resuming) && waited < 1000; waited += 2) await new Promise((res) => setTimeout(res, 2));
      const r = rand();
      const i = Math.floor(rand() * SERVICES);
      if (r < 0.3) {
        if (exists.services.has(i) && rand() < 0.15) {
          await remove('services', `svc${i}`);
          exists.services.delete(i);
        } else {
          await put('services', service(i));
          exists.services.add(i);
        }
      } else if (r < 0.6) {
        if (exists.endpointslices.has(i) && rand() < 0.15) {
          await remove('endpointslices', `svc${i}-abc`);
          exists.endpointslices.delete(i);
        } else {
          await put('endpointslices', slice(i));
          exists.endpointslices.add(i);
        }
      } else if (r < 0.7) {
        const node = pick(nodes);
        const from = Object.keys(pools).find((p) => pools[p].includes(node));
        const to = pick(Object.keys(pools));
        if (from) pools[from] = pools[from].filter((n) => n !== node);
        const joins = rand() < 0.9;
        scopeWrite();
        if (joins) pools[to].push(node);
        await opts.driver.setNodePool(node, joins ? to : undefined);
        const gateAnnotation = (pool: string) => (poolGates[pool] === undefined ? {} : { 'poolview.openyurt.io/feature-gates': poolGates[pool]! });
        if (from) await opts.driver.setPoolNodes(from, pools[from], gateAnnotation(from));
        await opts.driver.setPoolNodes(to, pools[to], gateAnnotation(to));
      } else if (r < 0.73) {
        // A per-pool feature gate (this node's pool or another) turns auto-listen on or off, live.
        const pool = pick(Object.keys(pools));
        poolGates[pool] = pick([undefined, 'NodePortAutoListen=true', 'NodePortAutoListen=false']);
        scopeWrite();
        await opts.driver.setPoolNodes(pool, pools[pool], poolGates[pool] === undefined ? {} : { 'poolview.openyurt.io/feature-gates': poolGates[pool]! });
      } else if (r < 0.78) {
        configMap = {};
        if (rand() < 0.5) configMap.servicetopology = pick(['cilium-agent', 'Cilium-Agent/1.18, other', '']);
        if (rand() < 0.5) configMap.filter_nodeportisolation = pick(['cilium-agent', ' cilium-agent ']);
        await putConfigMap();
      } else if (r < 0.86) {
        pick(clients).reflector.disconnect();
      } else if (r < 0.9 && opts.driver.dropWatches) {
        // poolview's scope sources resume or re-list: changes they missed meanwhile apply late.
        scopeWrite();
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
  opts.log?.(
    `${ctx}: ${opts.steps} steps, ${checks} quiet points, ${relists} re-lists, ${stats.synthesized} synthesized events, ` +
      `${stats.resumed} watches resumed right after one (${stats.expired} answered 410, ${stats.expiredUnexplained} of them with no scope change written around)`,
  );
  return { events: opts.steps, relists, checks, ...stats };
}
