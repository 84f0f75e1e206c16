// Filtered views on the real control plane: a component the yurt-hub-cfg ConfigMap targets while
// its watches are open sees its view shrink through DELETED events and grow back through ADDED
// events (raw watch streams, @kubernetes/client-node informers and the contract-checking test
// reflector, all as cilium-agent); an untargeted client (kubectl) sees exactly the apiserver; a
// targeted GET of an object outside the view answers 404 NotFound; a LIST the apiserver gzips (poolview
// asks for gzip) is decoded and filtered.
import { readFileSync } from 'node:fs';
import { CoreV1Api, DiscoveryV1Api, KubeConfig, makeInformer, type KubernetesObject, type V1EndpointSlice, type V1Service } from '@kubernetes/client-node';
import { Agent, getGlobalDispatcher, request, setGlobalDispatcher, type Dispatcher } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KubeList, KubeObject } from '../support/cluster.js';
import { ClientReflector, contentOf, type Obj } from '../support/client-reflector.js';
import { startTestPoolview, type TestPoolview } from '../support/poolview.js';
import { poll } from '../support/processes.js';
import { kubeConfigAs as kubeConfigFor } from '../support/client-node.js';
import { sharedCluster, uniqueName } from '../support/shared-cluster.js';

const cluster = sharedCluster();
const ns = uniqueName('views');
const poolA = uniqueName('views-a');
const poolB = uniqueName('views-b');
const [n1, n2, n3] = [1, 2, 3].map((i) => `${ns}-n${i}`) as [string, string, string];
const CILIUM = 'cilium-agent/1.18';
const KUBE_PROXY = 'kube-proxy/v1.35.4 (linux/amd64) kubernetes/e2e';
const CONFIGMAP = { ns: 'kube-system', name: 'yurt-hub-cfg' };
let pv: TestPoolview;
let agent: Agent;
let previousDispatcher: Dispatcher;

const names = (objs: readonly { metadata?: { name?: string } }[]): string[] => objs.map((o) => String(o.metadata?.name)).sort();
const sliceNodes = (s: { endpoints?: { nodeName?: string }[] | null } | undefined): string[] =>
  (s?.endpoints ?? []).map((e) => String(e.nodeName)).sort();

/** A GET through poolview's HTTPS port with any User-Agent and the admin token. */
async function getThrough<T = any>(path: string, userAgent: string): Promise<{ status: number; body: T }> {
  const res = await request(new URL(path, pv.httpsUrl), {
    headers: { 'user-agent': userAgent, authorization: `Bearer ${cluster.tokens.admin}`, accept: 'application/json' },
    dispatcher: agent,
  });
  return { status: res.statusCode, body: (await res.body.json()) as T };
}

interface WatchEvent {
  type: string;
  object: Obj & { endpoints?: { nodeName?: string }[] };
}

/** One raw WATCH stream through poolview (no reconnects: every event must come on this stream). */
function rawWatch(path: string, userAgent: string, resourceVersion: string): { events: WatchEvent[]; ended: () => boolean; close(): void } {
  const events: WatchEvent[] = [];
  const abort = new AbortController();
  let ended = false;
  const url = new URL(path, pv.httpsUrl);
  url.search = new URLSearchParams({ watch: 'true', allowWatchBookmarks: 'true', resourceVersion, timeoutSeconds: '600' }).toString();
  void (async () => {
    try {
      const res = await request(url, {
        headers: { 'user-agent': userAgent, authorization: `Bearer ${cluster.tokens.admin}`, accept: 'application/json' },
        dispatcher: agent,
        signal: abort.signal,
      });
      let pending = '';
      for await (const chunk of res.body) {
        pending += chunk.toString();
        for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          if (line.trim()) events.push(JSON.parse(line) as WatchEvent);
        }
      }
    } catch {
      // aborted at close
    } finally {
      ended = true;
    }
  })();
  return { events, ended: () => ended, close: () => abort.abort() };
}

/** A KubeConfig for poolview's HTTPS port whose requests (lists and watches) carry `userAgent`. */
function kubeConfigAs(userAgent: string): KubeConfig {
  return kubeConfigFor(cluster, pv.httpsUrl, userAgent);
}

/** Requests poolview counted for `component` (finished + in flight). */
async function requestsOf(component: string, resource: string): Promise<number> {
  let sum = 0;
  for (const metric of ['poolview_requests_total', 'poolview_requests_in_flight']) {
    for (const v of (await pv.registry.getSingleMetric(metric)!.get()).values) {
      if (v.labels.component === component && v.labels.resource === resource) sum += v.value;
    }
  }
  return sum;
}

beforeAll(async () => {
  agent = new Agent({ connect: { ca: readFileSync(cluster.caFile) } });
  // The test reflector calls undici's request() without a dispatcher.
  previousDispatcher = getGlobalDispatcher();
  setGlobalDispatcher(agent);

  await cluster.delete('v1', 'ConfigMap', CONFIGMAP.name, CONFIGMAP.ns);
  await cluster.createNamespace(ns);
  await cluster.createNodePool(poolA, { nodes: [n1, n2] });
  await cluster.createNodePool(poolB, { nodes: [n3] });
  await cluster.createNode(n1, { internalIP: '10.250.253.1', pool: poolA });
  await cluster.createNode(n2, { internalIP: '10.250.253.2', pool: poolA });
  await cluster.createNode(n3, { internalIP: '10.250.253.3', pool: poolB });
  const port = [{ name: 'http', port: 80, targetPort: 8080 }];
  await cluster.createService(ns, 'np-own', { type: 'NodePort', ports: port, annotations: { 'nodeport.openyurt.io/listen': poolA } });
  await cluster.createService(ns, 'np-other', { type: 'NodePort', ports: port, annotations: { 'nodeport.openyurt.io/listen': poolB } });
  await cluster.createService(ns, 'np-plain', { type: 'NodePort', ports: port });
  await cluster.createService(ns, 'topo', { ports: port, annotations: { 'openyurt.io/topologyKeys': 'openyurt.io/nodepool' } });
  await cluster.createEndpointSlice(ns, 'topo-1', {
    service: 'topo',
    ports: [{ name: 'http', port: 8080 }],
    endpoints: [
      { ip: '10.244.1.1', nodeName: n1 },
      { ip: '10.244.2.1', nodeName: n2 },
      { ip: '10.244.3.1', nodeName: n3 },
    ],
  });
  pv = await startTestPoolview(cluster, { nodeName: n1 });
});

afterAll(async () => {
  // Client sockets first: poolview's close() waits for every socket of its HTTPS port.
  setGlobalDispatcher(previousDispatcher);
  await agent?.destroy();
  await pv?.close();
  await cluster.delete('v1', 'ConfigMap', CONFIGMAP.name, CONFIGMAP.ns);
  await cluster.delete('v1', 'Namespace', ns);
  for (const n of [n1, n2, n3]) await cluster.delete('v1', 'Node', n);
  for (const p of [poolA, poolB]) await cluster.delete('apps.openyurt.io/v1beta2', 'NodePool', p);
  await cluster.close();
});

describe('a component added to yurt-hub-cfg while its watches are open', () => {
  it('sees its view shrink through DELETED events and grow back through ADDED events', async () => {
    const svcPath = `/api/v1/namespaces/${ns}/services`;
    const slicePath = `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`;

    // Raw watches from a list's resourceVersion: every transition must arrive on this one stream.
    const svcList = await getThrough<KubeList>(svcPath, CILIUM);
    const sliceList = await getThrough<KubeList>(slicePath, CILIUM);
    expect(names(svcList.body.items)).toEqual(['np-other', 'np-own', 'np-plain', 'topo']);
    expect(sliceNodes(sliceList.body.items[0] as never)).toEqual([n1, n2, n3].sort());
    const svcWatch = rawWatch(svcPath, CILIUM, svcList.body.metadata.resourceVersion);
    const sliceWatch = rawWatch(slicePath, CILIUM, sliceList.body.metadata.resourceVersion);

    // @kubernetes/client-node informers as cilium-agent.
    const kc = kubeConfigAs(CILIUM);
    const core = kc.makeApiClient(CoreV1Api);
    const discovery = kc.makeApiClient(DiscoveryV1Api);
    const informerErrors: unknown[] = [];
    const svcInformer = makeInformer<V1Service>(kc, svcPath, () => core.listNamespacedService({ namespace: ns }));
    const sliceInformer = makeInformer<V1EndpointSlice>(kc, slicePath, () => discovery.listNamespacedEndpointSlice({ namespace: ns }));
    const informed: string[] = [];
    for (const [kind, inf] of [['svc', svcInformer], ['slice', sliceInformer]] as const) {
      const informer = inf as ReturnType<typeof makeInformer<KubernetesObject>>;
      informer.on('add', (o) => informed.push(`${kind} add ${o.metadata?.name}`));
      informer.on('update', (o) => informed.push(`${kind} update ${o.metadata?.name}`));
      informer.on('delete', (o) => informed.push(`${kind} delete ${o.metadata?.name}`));
      informer.on('error', (err) => informerErrors.push(err));
    }

    // The contract-checking reflectors, one per client-go path.
    const reflectors = [
      new ClientReflector({ baseUrl: pv.httpsUrl, path: svcPath, userAgent: CILIUM, token: cluster.tokens.admin, mode: 'classic' }),
      new ClientReflector({ baseUrl: pv.httpsUrl, path: slicePath, userAgent: CILIUM, token: cluster.tokens.admin, mode: 'watchlist' }),
    ];

    const setTargeted = async (targeted: boolean): Promise<void> => {
      if (targeted) {
        await cluster.apply({
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name: CONFIGMAP.name, namespace: CONFIGMAP.ns },
          data: { nodeportisolation: 'cilium-agent', filter_servicetopology: 'Cilium-Agent/1.18' },
        });
      } else {
        await cluster.delete('v1', 'ConfigMap', CONFIGMAP.name, CONFIGMAP.ns);
      }
    };
    const timings: Record<string, number> = {};
    try {
      await Promise.all([svcInformer.start(), sliceInformer.start()]);
      for (const r of reflectors) r.start();
      await poll('informers and reflectors list everything', () =>
        svcInformer.list().length === 4 &&
        sliceNodes(sliceInformer.list()[0]).length === 3 &&
        reflectors[0]!.cache.size === 4 &&
        reflectors[1]!.cache.size === 1,
      );
      // The informers' requests were counted as cilium-agent's: the User-Agent reached poolview.
      expect(await requestsOf('cilium-agent', 'services')).toBeGreaterThan(0);
      expect(svcWatch.events.filter((e) => e.type !== 'BOOKMARK')).toEqual([]);
      const heldOther = svcList.body.items.find((s) => s.metadata?.name === 'np-other')!;
      const heldSlice = sliceList.body.items[0]!;

      // --- targeted: np-other (listens in pool B only) leaves; topo-1 loses n3's endpoint. ---
      let t = Date.now();
      await setTargeted(true);
      await poll('raw watches see the view shrink', () =>
        svcWatch.events.some((e) => e.type === 'DELETED' && e.object.metadata.name === 'np-other') &&
        sliceWatch.events.some((e) => e.type !== 'DELETED' && e.type !== 'BOOKMARK' && sliceNodes(e.object).join() === [n1, n2].sort().join()),
        10_000, 20,
      );
      timings['ConfigMap targets cilium-agent → raw watch events'] = Date.now() - t;
      const deleted = svcWatch.events.find((e) => e.type === 'DELETED')!;
      // docs/design.md rule 3: the DELETED carries the version the client saw (here: from its list).
      expect(contentOf(deleted.object)).toBe(contentOf(heldOther as Obj));
      expect(svcWatch.events.filter((e) => e.type !== 'BOOKMARK').map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(['DELETED np-other']);
      // docs/design.md rule 5: the emptied slice reaches the informer as a change: a MODIFIED under a
      // resourceVersion the client does not hold, or DELETED + ADDED (when the view's mark is the
      // resourceVersion the client holds, as here when the slice was the last write before the list).
      const sliceChange = sliceWatch.events.filter((e) => e.type !== 'BOOKMARK');
      const types = sliceChange.map((e) => e.type).join(' ');
      expect(types).toMatch(/^(MODIFIED|DELETED ADDED)$/);
      if (types === 'MODIFIED') expect(sliceChange[0]!.object.metadata.resourceVersion).not.toBe(heldSlice.metadata?.resourceVersion);
      else expect(contentOf(sliceChange[0]!.object)).toBe(contentOf(heldSlice as Obj));
      await poll('informers follow', () =>
        names(svcInformer.list()).join() === 'np-own,np-plain,topo' && sliceNodes(sliceInformer.list()[0]).join() === [n1, n2].sort().join(),
        10_000, 20,
      );
      timings['ConfigMap targets cilium-agent → informer caches'] = Date.now() - t;
      expect(informed).toContain('svc delete np-other');
      await poll('reflectors follow', () =>
        !reflectors[0]!.cache.has(`${ns}/np-other`) && sliceNodes(reflectors[1]!.cache.get(`${ns}/topo-1`) as never).length === 2,
        10_000, 20,
      );

      // --- untargeted again (the ConfigMap is deleted): everything comes back. ---
      const mark = { svc: svcWatch.events.length, slice: sliceWatch.events.length, informed: informed.length };
      t = Date.now();
      await setTargeted(false);
      await poll('raw watches see the view grow back', () =>
        svcWatch.events.slice(mark.svc).some((e) => e.type === 'ADDED' && e.object.metadata.name === 'np-other') &&
        sliceWatch.events.slice(mark.slice).some((e) => e.type !== 'DELETED' && e.type !== 'BOOKMARK' && sliceNodes(e.object).length === 3),
        10_000, 20,
      );
      timings['ConfigMap entry removed → raw watch events'] = Date.now() - t;
      expect(svcWatch.events.slice(mark.svc).filter((e) => e.type !== 'BOOKMARK').map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(['ADDED np-other']);
      const added = svcWatch.events.slice(mark.svc).find((e) => e.type === 'ADDED')!;
      const stored = await cluster.get('v1', 'Service', 'np-other', ns);
      const { resourceVersion: _a, ...addedMeta } = added.object.metadata;
      const { resourceVersion: _b, ...storedMeta } = stored!.metadata!;
      expect({ ...added.object, metadata: addedMeta, kind: undefined, apiVersion: undefined }).toEqual({ ...stored, metadata: storedMeta, kind: undefined, apiVersion: undefined });
      await poll('informers follow', () => svcInformer.list().length === 4 && sliceNodes(sliceInformer.list()[0]).length === 3, 10_000, 20);
      timings['ConfigMap entry removed → informer caches'] = Date.now() - t;
      expect(informed.slice(mark.informed)).toContain('svc add np-other');
      await poll('reflectors follow', () => reflectors[0]!.cache.size === 4 && sliceNodes(reflectors[1]!.cache.get(`${ns}/topo-1`) as never).length === 3, 10_000, 20);

      // No stream ended or re-listed along the way; no contract violation anywhere.
      expect(svcWatch.ended()).toBe(false);
      expect(sliceWatch.ended()).toBe(false);
      expect(reflectors.flatMap((r) => r.violations)).toEqual([]);
      expect(informerErrors).toEqual([]);
      console.table(Object.entries(timings).map(([change, ms]) => ({ change, ms })));
    } finally {
      svcWatch.close();
      sliceWatch.close();
      await Promise.all(reflectors.map((r) => r.stop()));
      await Promise.all([svcInformer.stop(), sliceInformer.stop()]);
    }
  });
});

describe('untargeted and targeted reads through poolview', () => {
  it('kubectl (untargeted) sees exactly what the apiserver serves', async () => {
    const args = ['get', 'services,endpointslices.discovery.k8s.io', '-n', ns, '-o', 'json'];
    const direct = await cluster.kubectlJson(args);
    const through = await cluster.kubectlJson(args, { server: pv.httpsUrl });
    const sorted = (l: KubeList): KubeObject[] => [...l.items].sort((a, b) => `${a.kind}/${a.metadata?.name}`.localeCompare(`${b.kind}/${b.metadata?.name}`));
    expect(sorted(direct).length).toBe(5);
    expect(sorted(through)).toEqual(sorted(direct));
  });

  it('a GET as kube-proxy of a Service outside its pool answers 404, while kubectl gets it', async () => {
    const path = (name: string): string => `/api/v1/namespaces/${ns}/services/${name}`;
    const outside = await getThrough<{ kind: string; reason: string; code: number; details?: { name?: string; kind?: string } }>(path('np-other'), KUBE_PROXY);
    expect(outside.status).toBe(404);
    expect(outside.body).toMatchObject({ kind: 'Status', reason: 'NotFound', code: 404, details: { name: 'np-other', kind: 'services' } });

    const inside = await getThrough<V1Service>(path('np-own'), KUBE_PROXY);
    expect(inside.status).toBe(200);
    expect(inside.body.metadata?.name).toBe('np-own');

    const list = await getThrough<KubeList>(`/api/v1/namespaces/${ns}/services`, KUBE_PROXY);
    expect(names(list.body.items)).toEqual(['np-own', 'np-plain', 'topo']);

    // The same object through poolview for kubectl: there, field for field.
    const getArgs = ['get', 'service', 'np-other', '-n', ns, '-o', 'json'];
    const viaKubectl = await cluster.kubectlJson<KubeObject>(getArgs, { server: pv.httpsUrl });
    expect(viaKubectl.metadata?.name).toBe('np-other');
    expect(viaKubectl).toEqual(await cluster.kubectlJson<KubeObject>(getArgs));

    // And the EndpointSlice as kube-proxy: pool A's endpoints only (servicetopology), never dropped.
    const slice = await getThrough<V1EndpointSlice>(`/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices/topo-1`, KUBE_PROXY);
    expect(slice.status).toBe(200);
    expect(sliceNodes(slice.body as never)).toEqual([n1, n2].sort());
    const sliceViaKubectl = await cluster.kubectlJson<V1EndpointSlice>(['get', 'endpointslice', 'topo-1', '-n', ns, '-o', 'json'], { server: pv.httpsUrl });
    expect(sliceNodes(sliceViaKubectl as never)).toEqual([n1, n2, n3].sort());
  });
});

describe('a LIST the apiserver answers gzipped', () => {
  it('is decoded and filtered: kube-proxy gets pool A\'s endpoints of every slice', async () => {
    // Over kube-apiserver's 128 KiB compression threshold: two slices of 900 endpoints over n1, n2, n3.
    const nodes = [n1, n2, n3];
    await cluster.createService(ns, 'big', { ports: [{ name: 'http', port: 80, targetPort: 8080 }], annotations: { 'openyurt.io/topologyKeys': 'openyurt.io/nodepool' } });
    for (const s of [1, 2]) {
      const endpoints = Array.from({ length: 900 }, (_, i) => ({ ip: `10.245.${s * 4 + Math.floor(i / 250)}.${i % 250}`, nodeName: nodes[i % 3]! }));
      await cluster.createEndpointSlice(ns, `big-${s}`, { service: 'big', ports: [{ name: 'http', port: 8080 }], endpoints });
    }
    const path = `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dbig`;
    // The apiserver gzips this LIST for a client that accepts gzip, as poolview does.
    const direct = await request(new URL(path, cluster.server), {
      headers: { authorization: `Bearer ${cluster.tokens.admin}`, accept: 'application/json', 'accept-encoding': 'gzip' },
      dispatcher: agent,
    });
    await direct.body.arrayBuffer();
    expect(direct.headers['content-encoding']).toBe('gzip');

    const through = await getThrough<KubeList<V1EndpointSlice>>(path, KUBE_PROXY);
    expect(through.status).toBe(200);
    expect(names(through.body.items)).toEqual(['big-1', 'big-2']);
    for (const slice of through.body.items) {
      expect(slice.endpoints).toHaveLength(600);
      expect(new Set(sliceNodes(slice as never))).toEqual(new Set([n1, n2]));
    }
  });
});
