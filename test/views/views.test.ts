// Filtered LIST, GET and WATCH through poolview on the fake apiserver: what a targeted component
// gets, compared with what the apiserver holds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeApiserver, type FakeApiserver } from '../fake/apiserver.js';
import { startPoolview, type RunningPoolview } from '../../src/app.js';
import { get, watch } from './client.js';
import { upstreamFromUrl } from '../../src/upstream.js';
import { waitFor } from '../src/proxy-harness.js';

const KUBE_PROXY = 'kube-proxy/v1.35.4 (linux/amd64) kubernetes/test';
const NS = 'views';

function nodePortService(name: string, listen?: string) {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: NS, annotations: listen === undefined ? {} : { 'nodeport.openyurt.io/listen': listen } },
    spec: { type: 'NodePort', ports: [{ port: 80, nodePort: 30080, protocol: 'TCP' }] },
  };
}

describe('filtered views', () => {
  let fake: FakeApiserver;
  let proxy: RunningPoolview;
  let leases: NodeJS.Timeout;

  beforeAll(async () => {
    fake = await startFakeApiserver({ bookmarkIntervalMs: 200, gzipMinBytes: 1024 });
    for (const [node, pool] of [['n1', 'pool1'], ['n2', 'pool2']]) {
      fake.create('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: node, labels: { 'apps.openyurt.io/nodepool': pool } } });
      fake.create('nodepools', { apiVersion: 'apps.openyurt.io/v1beta2', kind: 'NodePool', metadata: { name: pool }, status: { nodes: [node] } });
    }
    fake.create('leases', { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'n1', namespace: 'kube-node-lease' } });
    leases = setInterval(() => fake.update('leases', fake.get('leases', 'kube-node-lease', 'n1')!), 100);
    fake.create('services', nodePortService('both', 'pool1,pool2'));
    fake.create('services', nodePortService('other', 'pool2'));
    for (let i = 0; i < 30; i++) fake.create('services', nodePortService(`pad${i}`, 'pool2'));
    proxy = await startPoolview({ nodeName: 'n1', port: 0, healthPort: 0, logLevel: 'warn' }, { upstream: upstreamFromUrl(fake.url) });
  });
  afterAll(async () => {
    clearInterval(leases);
    await proxy?.close();
    await fake?.close();
  });

  it('LIST: a targeted component gets only its view; others get everything', async () => {
    const path = `/api/v1/namespaces/${NS}/services`;
    const viaKubeProxy = await get(proxy.url, path, KUBE_PROXY, { accept: 'application/vnd.kubernetes.protobuf, application/json', 'accept-encoding': 'gzip' });
    expect(viaKubeProxy.status).toBe(200);
    expect(viaKubeProxy.headers['content-type']).toMatch(/^application\/json/);
    expect(viaKubeProxy.json().items.map((s: any) => s.metadata.name)).toEqual(['both']);
    const viaKubectl = await get(proxy.url, path, 'kubectl/v1.35.4');
    const direct = await get(fake.url, path, 'kubectl/v1.35.4');
    // A kept item is upstream's item, field for field and in order (no kind/apiVersion added), but
    // for a resourceVersion the scope's revision may have raised (docs/design.md rule 5, mechanism (d)).
    const upstreamItem = direct.json().items.find((s: any) => s.metadata.name === 'both');
    const served = viaKubeProxy.json().items[0];
    expect(upstreamItem.kind).toBeUndefined();
    expect(Number(served.metadata.resourceVersion)).toBeGreaterThanOrEqual(Number(upstreamItem.metadata.resourceVersion));
    upstreamItem.metadata.resourceVersion = served.metadata.resourceVersion;
    expect(JSON.stringify(served)).toBe(JSON.stringify(upstreamItem));
    expect(Object.keys(viaKubeProxy.json())).toEqual(Object.keys(direct.json()));
    // Byte for byte, but for the list's resourceVersion: node leases move it on between the two reads.
    const listRv = /^\{"kind":"ServiceList","apiVersion":"v1","metadata":\{"resourceVersion":"\d+"/;
    expect(viaKubectl.text.replace(listRv, '')).toBe(direct.text.replace(listRv, ''));
    expect(viaKubectl.text).toMatch(listRv);
  });

  it('LIST with limit: continue passes, remainingItemCount is removed, list resourceVersion is upstream', async () => {
    const path = `/api/v1/namespaces/${NS}/services?limit=5`;
    const direct = (await get(fake.url, path, 'kubectl')).json();
    const page = (await get(proxy.url, path, KUBE_PROXY)).json();
    expect(direct.metadata.remainingItemCount).toBeGreaterThan(0);
    expect(page.metadata.remainingItemCount).toBeUndefined();
    expect(page.metadata.continue).toBeTruthy();
    const next = (await get(proxy.url, `${path}&continue=${encodeURIComponent(page.metadata.continue)}`, KUBE_PROXY)).json();
    expect(next.metadata.resourceVersion).toBe(page.metadata.resourceVersion);
  });

  it('GET of an object outside the view answers 404 like the apiserver', async () => {
    const hidden = await get(proxy.url, `/api/v1/namespaces/${NS}/services/other`, KUBE_PROXY);
    const missing = await get(fake.url, `/api/v1/namespaces/${NS}/services/other`.replace('other', 'other'), 'kubectl');
    expect(missing.status).toBe(200);
    expect(hidden.status).toBe(404);
    const absent = await get(fake.url, `/api/v1/namespaces/${NS}/services/nothere`, 'kubectl');
    expect(hidden.json()).toEqual({ ...absent.json(), message: absent.json().message.replace('nothere', 'other'), details: { ...absent.json().details, name: 'other' } });
    expect((await get(proxy.url, `/api/v1/namespaces/${NS}/services/both`, KUBE_PROXY)).status).toBe(200);
  });

  it('Table requests get plain JSON without hidden objects; Table-only requests get 406', async () => {
    const table = 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json';
    const res = await get(proxy.url, `/api/v1/namespaces/${NS}/services`, KUBE_PROXY, { accept: table });
    expect(res.json().kind).toBe('ServiceList');
    expect(res.text).not.toContain('"other"');
    const only = await get(proxy.url, `/api/v1/namespaces/${NS}/services`, KUBE_PROXY, { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' });
    expect(only.status).toBe(406);
  });

  it('metadata-only requests are projected from the filtered objects', async () => {
    const accept = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json';
    const res = (await get(proxy.url, `/api/v1/namespaces/${NS}/services`, KUBE_PROXY, { accept })).json();
    expect(res.kind).toBe('PartialObjectMetadataList');
    expect(res.items.map((i: any) => [i.kind, i.metadata.name])).toEqual([['PartialObjectMetadata', 'both']]);
    expect(res.items[0].spec).toBeUndefined();
  });

  it('WATCH: listen shrinks → DELETED with the last version seen; grows back → ADDED', async () => {
    fake.create('services', nodePortService('shrink', 'pool1,pool2'));
    const before = fake.get('services', NS, 'shrink')!;
    const rv = String(fake.rv());
    const events = await watch(
      proxy.url,
      `/api/v1/namespaces/${NS}/services?watch=true&resourceVersion=${rv}`,
      KUBE_PROXY,
      () => {
        // The watch resumes from rv: both writes reach it, in order.
        fake.update('services', { ...before, metadata: { ...before.metadata, annotations: { 'nodeport.openyurt.io/listen': 'pool2' } } });
        fake.update('services', { ...before, metadata: { ...before.metadata, annotations: { 'nodeport.openyurt.io/listen': 'pool1' } } });
      },
      (evs) => evs.filter((e) => e.type !== 'BOOKMARK').length >= 2,
    );
    const changes = events.filter((e) => e.type !== 'BOOKMARK');
    expect(changes.map((e) => e.type)).toEqual(['DELETED', 'ADDED']);
    expect(changes[0].object.metadata.annotations['nodeport.openyurt.io/listen']).toBe('pool1,pool2');
    expect(Number(changes[0].object.metadata.resourceVersion)).toBeGreaterThan(Number(before.metadata.resourceVersion));
    expect(changes[1].object.metadata.annotations['nodeport.openyurt.io/listen']).toBe('pool1');
  });

  it('?watch=yes is a watch, as for the apiserver, and LISTs answer while it is open', async () => {
    const rv = String(fake.rv());
    let listed: number | string | undefined;
    const events = await watch(
      proxy.url,
      `/api/v1/namespaces/${NS}/services?watch=yes&resourceVersion=${rv}`,
      KUBE_PROXY,
      async () => {
        const list = get(proxy.url, `/api/v1/namespaces/${NS}/services`, KUBE_PROXY).then((r) => r.status);
        listed = await Promise.race([list, new Promise<string>((r) => setTimeout(() => r('no answer within 10 s'), 10_000))]);
        fake.create('services', nodePortService('watch-yes', 'pool1'));
      },
      (evs) => evs.some((e) => e.object.metadata.name === 'watch-yes'),
    );
    expect(listed).toBe(200);
    expect(events.filter((e) => e.type !== 'BOOKMARK').map((e) => [e.type, e.object.metadata.name])).toEqual([['ADDED', 'watch-yes']]);
  });

  it('WATCH: a ConfigMap entry targeting an open watch shrinks its view, and removing it grows it back', async () => {
    const rv = String(fake.rv());
    const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'yurt-hub-cfg', namespace: 'kube-system' }, data: { nodeportisolation: 'Cilium-Agent/v1.18' } };
    const events = await watch(
      proxy.url,
      // Bookmarks (every 200 ms here) tell the view its upstream passed the change's revision.
      `/api/v1/namespaces/${NS}/services?watch=true&allowWatchBookmarks=true&resourceVersion=${rv}`,
      'cilium-agent/1.18.0',
      async (events) => {
        fake.create('configmaps', cm);
        // Removed once the view has shrunk (two quick changes could be coalesced into none).
        await waitFor(() => events.some((e) => e.type === 'DELETED' && e.object.metadata.name === 'other'), 5_000, 'the view to shrink');
        fake.delete('configmaps', 'kube-system', 'yurt-hub-cfg');
      },
      (evs) => evs.filter((e) => e.type === 'ADDED').length >= 31,
    );
    const deleted = events.filter((e) => e.type === 'DELETED').map((e) => e.object.metadata.name);
    const added = events.filter((e) => e.type === 'ADDED').map((e) => e.object.metadata.name);
    expect(deleted).toContain('other');
    expect(deleted).not.toContain('both');
    expect(added.sort()).toEqual(deleted.sort());
  });

  it('WATCH of a component no filter targets: the upstream events as they are', async () => {
    const rv = String(fake.rv());
    const path = `/api/v1/namespaces/${NS}/services?watch=true&resourceVersion=${rv}`;
    // Both watches resume from rv: the write reaches them whenever they open.
    const act = () => void fake.create('services', nodePortService('untargeted', 'pool2'));
    const gotIt = (evs: any[]) => evs.some((e) => e.object.metadata.name === 'untargeted');
    const [through, direct] = await Promise.all([watch(proxy.url, path, 'flannel/0.25', act, gotIt), watch(fake.url, path, 'flannel/0.25', () => {}, gotIt)]);
    const changes = (evs: any[]) => evs.filter((e) => e.type !== 'BOOKMARK');
    expect(changes(through)).toEqual(changes(direct));
    expect(changes(through).map((e) => [e.type, e.object.metadata.name])).toEqual([['ADDED', 'untargeted']]);
  });

  it('WATCH without a resourceVersion ends with 410 Expired when a filter comes to target its component', async () => {
    const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'yurt-hub-cfg', namespace: 'kube-system' }, data: { nodeportisolation: 'calico-node' } };
    const events = await watch(
      proxy.url,
      `/api/v1/namespaces/${NS}/services?watch=true`,
      'calico-node/v3.30',
      async (events) => {
        // Targeted after it has its initial ADDEDs (every Service of the namespace).
        await waitFor(() => events.filter((e) => e.type === 'ADDED').length >= 32, 5_000, 'the initial ADDEDs');
        fake.create('configmaps', cm);
      },
      (evs) => evs.some((e) => e.type === 'ERROR'),
    );
    fake.delete('configmaps', 'kube-system', 'yurt-hub-cfg');
    // The change is applied before the next test's watch: calico-node is untargeted again.
    await waitFor(async () => (await get(proxy.url, `/api/v1/namespaces/${NS}/services`, 'calico-node/v3.30')).text.includes('"other"'), 5_000, 'calico-node untargeted');
    // It got every Service as an initial ADDED first: it cannot be told which it holds at one revision.
    expect(events.filter((e) => e.type === 'ADDED').length).toBeGreaterThanOrEqual(32);
    expect(events.at(-1)).toMatchObject({ type: 'ERROR', object: { code: 410, reason: 'Expired' } });
  });

  it('streaming list: the initial-events-end bookmark passes even when every object is filtered out', async () => {
    const events = await watch(
      proxy.url,
      `/api/v1/namespaces/${NS}/services?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&labelSelector=none%3Dmatch`,
      KUBE_PROXY,
      () => {},
      (evs) => evs.some((e) => e.type === 'BOOKMARK'),
    );
    const bookmark = events.find((e) => e.type === 'BOOKMARK');
    expect(bookmark.object.metadata.annotations['k8s.io/initial-events-end']).toBe('true');
  });

  it('gzip answers from upstream are decoded before filtering', async () => {
    // poolview asks upstream for gzip on the LISTs it filters (the fake gzips answers over 1 KiB),
    // whatever the client asked for, and gunzips them before it reads the items.
    const gzippedLists = () => fake.gzipped.filter((r) => r.url.startsWith('/api/v1/services?') || r.url === '/api/v1/services').length;
    const before = gzippedLists();
    const res = await get(proxy.url, `/api/v1/services`, KUBE_PROXY);
    expect(gzippedLists()).toBe(before + 1);
    expect(res.status).toBe(200);
    expect(res.headers['content-encoding']).toBeUndefined();
    // The view of pool1: the NodePort Services that listen there (none here lacks the annotation).
    const upstream = (await get(fake.url, `/api/v1/services`, 'kubectl')).json().items;
    const inPool1 = upstream.filter((s: any) => s.metadata.annotations['nodeport.openyurt.io/listen'].split(',').includes('pool1')).map((s: any) => s.metadata.name);
    expect(inPool1).toContain('both');
    expect(res.json().items.map((s: any) => s.metadata.name)).toEqual(inPool1);
  });
});
