// A scope change that keeps an object in view with new content (a Service's topologyKeys flip):
// one MODIFIED at the change's own revision once the view's upstream passed it, and the counted
// DELETED+ADDED fallback when nothing upstream moves within --scope-change-wait (a quiet cluster:
// no bookmarks, no writes). Also: no wait before a LIST where no client can hold an older view.
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFakeApiserver, type FakeApiserver } from '../fake/apiserver.js';
import { startPoolview, type RunningPoolview } from '../../src/app.js';
import { upstreamFromUrl } from '../../src/upstream.js';
import { JsonValueQueue } from '../support/json-stream.js';
import { scopeChangeFallbacks } from '../support/model.js';

const KUBE_PROXY = 'kube-proxy/v1.35.4 (linux/amd64) kubernetes/test';
const NS = 'scope';
const SLICES = `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`;
const WAIT_MS = 400;

interface WatchEvent {
  type: string;
  object: { metadata: { name: string; resourceVersion: string }; endpoints?: Array<{ nodeName: string }> };
}

function service(name: string, topology?: string) {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: NS, annotations: topology ? { 'openyurt.io/topologyKeys': topology } : {} },
    spec: { type: 'ClusterIP', ports: [{ port: 80, protocol: 'TCP' }] },
  };
}

function slice(name: string, nodes: string[]) {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${name}-abc`, namespace: NS, labels: { 'kubernetes.io/service-name': name } },
    addressType: 'IPv4',
    endpoints: nodes.map((nodeName, i) => ({ addresses: [`10.0.0.${i + 1}`], conditions: { ready: true }, nodeName })),
    ports: [{ port: 8080, protocol: 'TCP' }],
  };
}

async function openWatch(base: string, rv: string, abort: AbortController) {
  const res = await request(`${base}${SLICES}?watch=true&resourceVersion=${rv}`, { headers: { 'user-agent': KUBE_PROXY }, signal: abort.signal });
  expect(res.statusCode).toBe(200);
  return new JsonValueQueue<WatchEvent>(res.body);
}

const nodesOf = (e: WatchEvent) => (e.object.endpoints ?? []).map((ep) => ep.nodeName).sort();

describe('scope change of an object that stays in view', () => {
  let fake: FakeApiserver;
  let proxy: RunningPoolview;
  const aborts: AbortController[] = [];

  /** n1 and n2 in one pool, poolview for n1; "web" has endpoints on both, pool topology. */
  async function start(): Promise<{ sliceRv: string }> {
    fake = await startFakeApiserver({ bookmarkIntervalMs: 0 });
    for (const node of ['n1', 'n2']) {
      fake.create('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: node, labels: { 'apps.openyurt.io/nodepool': 'pool1' } } });
    }
    fake.create('nodepools', { apiVersion: 'apps.openyurt.io/v1beta2', kind: 'NodePool', metadata: { name: 'pool1' }, status: { nodes: ['n1', 'n2'] } });
    fake.create('services', service('web', 'openyurt.io/nodepool'));
    fake.create('endpointslices', slice('web', ['n1']));
    proxy = await startPoolview({ nodeName: 'n1', port: 0, healthPort: 0, logLevel: 'warn', scopeChangeWaitMs: WAIT_MS }, { upstream: upstreamFromUrl(fake.url) });
    // The slice's last write is the last event the watch below delivers: the client holds the
    // view's last delivered resourceVersion, where a MODIFIED would look like a resync.
    return { sliceRv: fake.update('endpointslices', slice('web', ['n1', 'n2'])).metadata.resourceVersion };
  }

  async function watchFromBefore(sliceRv: string) {
    const abort = new AbortController();
    aborts.push(abort);
    const events = await openWatch(proxy.url, String(Number(sliceRv) - 1), abort);
    const first = await events.next((e) => e.type === 'MODIFIED', 5000);
    expect(first.object.metadata.resourceVersion).toBe(sliceRv);
    expect(nodesOf(first)).toEqual(['n1', 'n2']);
    return events;
  }

  function flipTopology(): string {
    return fake.update('services', service('web', 'kubernetes.io/hostname')).metadata.resourceVersion;
  }

  afterEach(async () => {
    for (const abort of aborts.splice(0)) abort.abort();
    await proxy?.close();
    await fake?.close();
  });

  it('goes out as one MODIFIED at the change\'s revision once upstream passes it, and a watch resumes from there', async () => {
    const { sliceRv } = await start();
    const events = await watchFromBefore(sliceRv);
    const changedAt = flipTopology();
    await new Promise((r) => setTimeout(r, 100));
    // Another Service's slice written after the change: the view's upstream is past its revision.
    const other = fake.create('endpointslices', slice('other', ['n2'])).metadata.resourceVersion;
    await events.next((e) => e.object.metadata.name === 'other-abc', 5000);
    const changes = events.values.slice(1);
    expect(changes.map((e) => [e.type, e.object.metadata.name])).toEqual([
      ['MODIFIED', 'web-abc'],
      ['ADDED', 'other-abc'],
    ]);
    // (i) a real revision: the Service write's; (ii) not the one held; (iv) between the two events.
    expect(changes[0].object.metadata.resourceVersion).toBe(changedAt);
    expect(nodesOf(changes[0])).toEqual(['n1']);
    expect(Number(changedAt)).toBeGreaterThan(Number(sliceRv));
    expect(Number(other)).toBeGreaterThan(Number(changedAt));
    expect(await scopeChangeFallbacks(proxy.registry)).toEqual({});

    // (iii) resuming from it gives exactly the events after it: no 410, the other slice once.
    const abort = new AbortController();
    aborts.push(abort);
    const resumed = await openWatch(proxy.url, changedAt, abort);
    const next = await resumed.next(() => true, 5000);
    expect([next.type, next.object.metadata.name, next.object.metadata.resourceVersion]).toEqual(['ADDED', 'other-abc', other]);
    const later = fake.update('endpointslices', slice('other', ['n1'])).metadata.resourceVersion;
    await resumed.next((e) => e.object.metadata.resourceVersion === later, 5000);
    expect(resumed.values.map((e) => e.type)).toEqual(['ADDED', 'MODIFIED']);
  });

  it('falls back to DELETED+ADDED at the last delivered resourceVersion when nothing upstream moves, and counts it', async () => {
    const { sliceRv } = await start();
    const events = await watchFromBefore(sliceRv);
    const started = Date.now();
    flipTopology();
    await events.next((e) => e.type === 'ADDED', 5000);
    const waited = Date.now() - started;
    const changes = events.values.slice(1);
    expect(changes.map((e) => [e.type, e.object.metadata.resourceVersion])).toEqual([
      ['DELETED', sliceRv],
      ['ADDED', sliceRv],
    ]);
    // DELETED carries what the client held; ADDED the new view.
    expect(nodesOf(changes[0])).toEqual(['n1', 'n2']);
    expect(nodesOf(changes[1])).toEqual(['n1']);
    expect(waited).toBeGreaterThanOrEqual(WAIT_MS - 50);
    expect(await scopeChangeFallbacks(proxy.registry)).toEqual({ timeout: 1 });
    const metrics = await proxy.registry.metrics();
    expect(metrics).toMatch(/poolview_scope_change_fallbacks_total\{reason="timeout"\} 1/);
  });

  it('a LIST after a change waits for no newer revision when no client holds a view at the newest one; nor does the first one after start', async () => {
    const { sliceRv } = await start();
    const list = async () => {
      const started = Date.now();
      const res = await request(`${proxy.url}${SLICES}`, { headers: { 'user-agent': KUBE_PROXY, accept: 'application/json' } });
      const body = (await res.body.json()) as { metadata: { resourceVersion: string }; items: WatchEvent['object'][] };
      return { ms: Date.now() - started, body };
    };
    const probes = () => fake.requests.filter((r) => r.url.includes('limit=1') && r.headers['user-agent'] === KUBE_PROXY).length;
    // The scope sources' initial sync is no change for clients that were not served yet.
    const first = await list();
    expect(probes()).toBe(0);
    expect(first.body.items[0].metadata.resourceVersion).toBe(sliceRv);
    const changedAt = flipTopology();
    await new Promise((r) => setTimeout(r, 50));
    // The change's revision is the Service write's, which upstream has: no probe, no wait.
    const after = await list();
    expect(probes()).toBe(0);
    expect(after.ms).toBeLessThan(WAIT_MS);
    expect(Number(after.body.metadata.resourceVersion)).toBeGreaterThanOrEqual(Number(changedAt));
    // Rule 5: the changed slice carries a resourceVersion the client did not hold.
    expect(after.body.items[0].metadata.resourceVersion).toBe(changedAt);
    expect(after.body.items[0].endpoints?.map((e) => e.nodeName)).toEqual(['n1']);
  });
});
