import { afterEach, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { request } from 'undici';
import { startFakeApiserver, type FakeApiserver, type FakeApiserverOptions } from './apiserver.js';
import { parseLabelSelector, labelPredicate } from './selectors.js';
import { waitFor } from '../src/proxy-harness.js';

let fake: FakeApiserver | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

async function start(opts: FakeApiserverOptions = {}): Promise<FakeApiserver> {
  fake = await startFakeApiserver({ tooLargeWaitMs: 50, ...opts });
  return fake;
}

async function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, any>; body: any; text: string }> {
  const res = await request(fake!.url + path, { headers });
  const text = await res.body.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.statusCode, headers: res.headers, body, text };
}

async function send(method: 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, body?: unknown, contentType = 'application/json') {
  const res = await request(fake!.url + path, {
    method,
    headers: { 'content-type': contentType },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.statusCode, body: (await res.body.json()) as any };
}

interface WatchHandle {
  status: number;
  headers: Record<string, any>;
  events: any[];
  ended: boolean;
  error?: Error;
  waitFor(n: number, ms?: number): Promise<any[]>;
  waitEnd(ms?: number): Promise<void>;
  close(): void;
}

async function watch(path: string, headers: Record<string, string> = {}): Promise<WatchHandle> {
  const res = await request(fake!.url + path, { headers });
  let buf = '';
  const waiters: Array<() => void> = [];
  const notify = () => waiters.splice(0).forEach((f) => f());
  const h: WatchHandle = {
    status: res.statusCode,
    headers: res.headers,
    events: [],
    ended: false,
    async waitFor(n, ms = 2000) {
      const deadline = Date.now() + ms;
      while (h.events.length < n) {
        if (h.ended || Date.now() > deadline) throw new Error(`wanted ${n} events, got ${JSON.stringify(h.events)}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 20);
        });
      }
      return h.events;
    },
    async waitEnd(ms = 2000) {
      const deadline = Date.now() + ms;
      while (!h.ended) {
        if (Date.now() > deadline) throw new Error('watch did not end');
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 20);
        });
      }
    },
    close: () => res.body.destroy(),
  };
  (async () => {
    try {
      for await (const chunk of res.body) {
        buf += chunk.toString();
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          h.events.push(JSON.parse(buf.slice(0, i)));
          buf = buf.slice(i + 1);
        }
        notify();
      }
    } catch (e) {
      h.error = e as Error;
    }
    h.ended = true;
    notify();
  })();
  return h;
}

const svc = (name: string, extra: Record<string, any> = {}, ns = 'default') => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: ns, ...(extra.metadata ?? {}) },
  spec: { clusterIP: '10.0.0.1', ports: [{ port: 80 }], ...(extra.spec ?? {}) },
});
const brief = (evs: any[]) => evs.map((e) => `${e.type} ${e.object.metadata?.name ?? ''}@${e.object.metadata?.resourceVersion}`);

describe('fake apiserver: discovery and errors', () => {
  it('serves discovery, version and health', async () => {
    await start();
    expect((await get('/healthz')).text).toBe('ok');
    expect((await get('/readyz')).text).toBe('ok');
    expect((await get('/version')).body.gitVersion).toBe('v1.35.4-fake');
    expect((await get('/api')).body.versions).toEqual(['v1']);
    const groups = (await get('/apis')).body;
    expect(groups.kind).toBe('APIGroupList');
    expect(groups.groups.find((g: any) => g.name === 'apps.openyurt.io').preferredVersion.version).toBe('v1beta2');
    const core = (await get('/api/v1')).body;
    expect(core.resources.find((r: any) => r.name === 'services')).toMatchObject({ kind: 'Service', namespaced: true, verbs: expect.arrayContaining(['watch']) });
    const disc = (await get('/apis/discovery.k8s.io/v1beta1')).body;
    expect(disc.resources.map((r: any) => r.name)).toEqual(['endpointslices']);
    const np = (await get('/apis/apps.openyurt.io/v1beta1')).body;
    expect(np.resources[0]).toMatchObject({ name: 'nodepools', namespaced: false });
  });

  it('404 NotFound Status like the apiserver', async () => {
    await start();
    const a = await get('/api/v1/namespaces/default/services/nope');
    expect(a.status).toBe(404);
    expect(a.body).toEqual({
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: 'NotFound', code: 404,
      message: 'services "nope" not found', details: { name: 'nope', kind: 'services' },
    });
    const b = await get('/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/x');
    expect(b.body.message).toBe('endpointslices.discovery.k8s.io "x" not found');
    expect(b.body.details).toEqual({ name: 'x', group: 'discovery.k8s.io', kind: 'endpointslices' });
    expect((await get('/api/v1/namespaces/default/widgets')).status).toBe(404);
    expect((await get('/api/v1/namespaces/default/nodes')).status).toBe(404); // cluster-scoped under a namespace
  });

  it('401 Unauthorized without a known bearer token', async () => {
    await start({ tokens: { good: 'alice' } });
    const a = await get('/api/v1/services');
    expect(a.status).toBe(401);
    expect(a.body).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'Unauthorized', code: 401, message: 'Unauthorized' });
    expect((await get('/api/v1/services', { authorization: 'Bearer bad' })).status).toBe(401);
    expect((await get('/api/v1/services', { authorization: 'Bearer good' })).status).toBe(200);
    expect(fake!.requests.map((r) => r.headers.authorization)).toEqual([undefined, 'Bearer bad', 'Bearer good']);
  });
});

describe('fake apiserver: writes', () => {
  it('create / get / update / patch / status / delete over HTTP', async () => {
    await start();
    const c = await send('POST', '/api/v1/namespaces/default/services', svc('a'));
    expect(c.status).toBe(201);
    expect(c.body.metadata).toMatchObject({ name: 'a', namespace: 'default', resourceVersion: '1' });
    expect(c.body.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect((await send('POST', '/api/v1/namespaces/default/services', svc('a'))).body).toMatchObject({ reason: 'AlreadyExists', code: 409, message: 'services "a" already exists' });

    const g = await get('/api/v1/namespaces/default/services/a');
    expect(g.body).toMatchObject({ kind: 'Service', apiVersion: 'v1', metadata: { name: 'a', resourceVersion: '1' } });
    expect(Object.keys(g.body).slice(0, 3)).toEqual(['kind', 'apiVersion', 'metadata']);

    const u = await send('PUT', '/api/v1/namespaces/default/services/a', { ...g.body, spec: { ...g.body.spec, clusterIP: '10.0.0.2' } });
    expect(u.status).toBe(200);
    expect(u.body.metadata.resourceVersion).toBe('2');
    expect(u.body.metadata.uid).toBe(c.body.metadata.uid);
    const stale = await send('PUT', '/api/v1/namespaces/default/services/a', g.body);
    expect(stale.status).toBe(409);
    expect(stale.body.reason).toBe('Conflict');

    const noop = await send('PUT', '/api/v1/namespaces/default/services/a', u.body);
    expect(noop.body.metadata.resourceVersion).toBe('2'); // no-op update: no new rv

    const mp = await send('PATCH', '/api/v1/namespaces/default/services/a', { metadata: { labels: { x: '1' } } }, 'application/merge-patch+json');
    expect(mp.body.metadata).toMatchObject({ labels: { x: '1' }, resourceVersion: '3' });
    const sp = await send('PATCH', '/api/v1/namespaces/default/services/a', { metadata: { labels: { x: null, y: '2' } } }, 'application/strategic-merge-patch+json');
    expect(sp.body.metadata.labels).toEqual({ y: '2' });
    const jp = await send('PATCH', '/api/v1/namespaces/default/services/a', [
      { op: 'replace', path: '/spec/clusterIP', value: '10.0.0.9' },
      { op: 'add', path: '/metadata/annotations', value: { a: 'b' } },
      { op: 'remove', path: '/metadata/labels/y' },
    ], 'application/json-patch+json');
    expect(jp.body.spec.clusterIP).toBe('10.0.0.9');
    expect(jp.body.metadata.annotations).toEqual({ a: 'b' });
    expect(jp.body.metadata.labels).toEqual({});

    // status subresource: PUT/PATCH on /status change only status; the main resource ignores status
    const st = await send('PATCH', '/api/v1/namespaces/default/services/a/status', { status: { loadBalancer: { ingress: [{ ip: '1.2.3.4' }] } }, spec: { clusterIP: 'x' } }, 'application/merge-patch+json');
    expect(st.body.status.loadBalancer.ingress[0].ip).toBe('1.2.3.4');
    expect(st.body.spec.clusterIP).toBe('10.0.0.9');
    const main = await send('PATCH', '/api/v1/namespaces/default/services/a', { status: { loadBalancer: {} } }, 'application/merge-patch+json');
    expect(main.body.status.loadBalancer.ingress[0].ip).toBe('1.2.3.4');

    const d = await send('DELETE', '/api/v1/namespaces/default/services/a');
    expect(d.status).toBe(200);
    expect(d.body.metadata.resourceVersion).toBe(String(fake!.rv()));
    expect((await send('DELETE', '/api/v1/namespaces/default/services/a')).status).toBe(404);
    expect(fake!.get('services', 'default', 'a')).toBeUndefined();
  });

  it('direct API: global rv, cluster-scoped, defaults, returned copies are independent', async () => {
    await start();
    const a = fake!.create('services', svc('a'));
    const n = fake!.create('nodes', { metadata: { name: 'n1', namespace: 'ignored' } });
    const np = fake!.create('nodepools', { metadata: { name: 'pool' }, spec: { type: 'Edge' } });
    expect([a.metadata.resourceVersion, n.metadata.resourceVersion, np.metadata.resourceVersion]).toEqual(['1', '2', '3']);
    expect(n.metadata.namespace).toBeUndefined();
    expect(np.apiVersion).toBe('apps.openyurt.io/v1beta2');
    expect(fake!.create('configmaps', { metadata: { name: 'c' } }).metadata.namespace).toBe('default');
    a.spec.clusterIP = 'mutated';
    expect(fake!.get('services', 'default', 'a')!.spec.clusterIP).toBe('10.0.0.1');
    const u = fake!.update('services', { ...a, spec: { clusterIP: '10.1.1.1' } });
    expect(u.metadata.resourceVersion).toBe('5');
    expect(() => fake!.create('services', svc('a'))).toThrow(/already exists/);
    expect(fake!.list('services').map((o) => o.metadata.name)).toEqual(['a']);
    expect(fake!.delete('services', 'default', 'a')!.metadata.resourceVersion).toBe('6');
    expect(fake!.rv()).toBe(6);
  });
});

describe('fake apiserver: list', () => {
  it('limit / continue pages are consistent at the first page rv', async () => {
    await start();
    for (const n of ['e', 'a', 'd', 'b', 'c']) fake!.create('services', svc(n));
    fake!.create('services', svc('z', {}, 'other'));
    const p1 = (await get('/api/v1/namespaces/default/services?limit=2')).body;
    expect(p1.kind).toBe('ServiceList');
    expect(p1.items.map((i: any) => i.metadata.name)).toEqual(['a', 'b']);
    expect(p1.items[0].kind).toBeUndefined(); // list items carry no TypeMeta, like the apiserver
    expect(p1.metadata).toMatchObject({ resourceVersion: '6', remainingItemCount: 3 });
    // changes between pages are not visible to later pages
    fake!.delete('services', 'default', 'c');
    fake!.create('services', svc('bb'));
    const p2 = (await get(`/api/v1/namespaces/default/services?limit=2&continue=${p1.metadata.continue}`)).body;
    expect(p2.items.map((i: any) => i.metadata.name)).toEqual(['c', 'd']);
    expect(p2.metadata.resourceVersion).toBe('6');
    const p3 = (await get(`/api/v1/namespaces/default/services?limit=2&continue=${p2.metadata.continue}`)).body;
    expect(p3.items.map((i: any) => i.metadata.name)).toEqual(['e']);
    expect(p3.metadata.continue).toBeUndefined();
    expect(p3.metadata.remainingItemCount).toBeUndefined();
    // all namespaces, current state
    const all = (await get('/api/v1/services')).body;
    expect(all.items.map((i: any) => `${i.metadata.namespace}/${i.metadata.name}`)).toEqual(['default/a', 'default/b', 'default/bb', 'default/d', 'default/e', 'other/z']);
    expect(all.metadata.resourceVersion).toBe('8');
    // selectors: no remainingItemCount
    const sel = (await get('/api/v1/services?limit=1&fieldSelector=metadata.namespace%3Ddefault')).body;
    expect(sel.metadata.continue).toBeDefined();
    expect(sel.metadata.remainingItemCount).toBeUndefined();
    // expired continue after compaction
    fake!.compact();
    const exp = await get(`/api/v1/namespaces/default/services?limit=2&continue=${p1.metadata.continue}`);
    expect(exp.status).toBe(410);
    expect(exp.body).toMatchObject({ reason: 'Expired', code: 410 });
    expect(exp.body.metadata.continue).toBeTruthy();
    const inconsistent = (await get(`/api/v1/namespaces/default/services?limit=10&continue=${exp.body.metadata.continue}`)).body;
    expect(inconsistent.items.map((i: any) => i.metadata.name)).toEqual(['bb', 'd', 'e']); // current state after 'b'
    expect((await get('/api/v1/services?continue=garbage')).status).toBe(400);
  });

  it('resourceVersion / resourceVersionMatch semantics and validation', async () => {
    await start();
    fake!.create('services', svc('a')); // 1
    fake!.create('configmaps', { metadata: { name: 'x' } }); // 2
    fake!.create('services', svc('b')); // 3
    fake!.update('services', { ...svc('a'), spec: { clusterIP: '10.9.9.9' } }); // 4
    fake!.delete('services', 'default', 'b'); // 5

    const at = async (q: string) => (await get(`/api/v1/services?${q}`)).body;
    let l = await at('resourceVersion=3&resourceVersionMatch=Exact');
    expect(l.metadata.resourceVersion).toBe('3');
    expect(l.items.map((i: any) => `${i.metadata.name}@${i.metadata.resourceVersion}`)).toEqual(['a@1', 'b@3']);
    l = await at('resourceVersion=2&limit=10'); // legacy: rv + limit = Exact
    expect(l.items.map((i: any) => i.metadata.name)).toEqual(['a']);
    expect(l.metadata.resourceVersion).toBe('2');
    l = await at('resourceVersion=2&resourceVersionMatch=NotOlderThan');
    expect(l.metadata.resourceVersion).toBe('5');
    expect(l.items.map((i: any) => `${i.metadata.name}@${i.metadata.resourceVersion}`)).toEqual(['a@4']);
    l = await at('resourceVersion=0');
    expect(l.metadata.resourceVersion).toBe('5');

    const tooLarge = await get('/api/v1/services?resourceVersion=99&resourceVersionMatch=NotOlderThan');
    expect(tooLarge.status).toBe(504);
    expect(tooLarge.body).toMatchObject({ reason: 'Timeout', code: 504, details: { causes: [{ reason: 'ResourceVersionTooLarge' }] } });

    const inv = await get('/api/v1/services?resourceVersionMatch=Exact');
    expect(inv.status).toBe(422);
    expect(inv.body).toMatchObject({ reason: 'Invalid', details: { group: 'meta.k8s.io', kind: 'ListOptions', causes: [{ field: 'resourceVersionMatch' }] } });
    expect(inv.body.message).toBe('ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided');
    expect((await get('/api/v1/services?resourceVersion=0&resourceVersionMatch=Exact')).status).toBe(422);
    expect((await get('/api/v1/services?resourceVersion=1&resourceVersionMatch=Bogus')).status).toBe(422);
    expect((await get('/api/v1/services?sendInitialEvents=true')).status).toBe(422);

    fake!.compact(3);
    expect((await at('resourceVersion=3&resourceVersionMatch=Exact')).items.length).toBe(2);
    const gone = await get('/api/v1/services?resourceVersion=2&resourceVersionMatch=Exact');
    expect(gone.status).toBe(410);
    expect(gone.body).toMatchObject({ reason: 'Expired', code: 410, message: 'The resourceVersion for the provided list is too old.' });
  });

  it('label and field selectors', async () => {
    await start();
    fake!.create('pods', { metadata: { name: 'p1', labels: { app: 'web', tier: 'fe' } }, spec: { nodeName: 'n1' } });
    fake!.create('pods', { metadata: { name: 'p2', labels: { app: 'db' } }, spec: { nodeName: 'n2' } });
    fake!.create('pods', { metadata: { name: 'p3' }, spec: {} });
    const names = async (q: string) => (await get(`/api/v1/pods?${q}`)).body.items.map((i: any) => i.metadata.name);
    expect(await names('labelSelector=app%3Dweb')).toEqual(['p1']);
    expect(await names('labelSelector=app%3D%3Dweb')).toEqual(['p1']);
    expect(await names('labelSelector=app!%3Dweb')).toEqual(['p2', 'p3']);
    expect(await names('labelSelector=app%20in%20(web,db)')).toEqual(['p1', 'p2']);
    expect(await names('labelSelector=app%20notin%20(web)')).toEqual(['p2', 'p3']);
    expect(await names('labelSelector=app')).toEqual(['p1', 'p2']);
    expect(await names('labelSelector=!app')).toEqual(['p3']);
    expect(await names('labelSelector=app,!tier')).toEqual(['p2']);
    expect(await names('fieldSelector=spec.nodeName%3Dn2')).toEqual(['p2']);
    expect(await names('fieldSelector=spec.nodeName%3D')).toEqual(['p3']);
    expect(await names('fieldSelector=spec.nodeName!%3Dn2,metadata.name!%3Dp3')).toEqual(['p1']);
    expect(await names('fieldSelector=metadata.name%3D%3Dp1')).toEqual(['p1']);
    expect((await get('/api/v1/pods?fieldSelector=spec.bogus%3D1')).body.message).toBe('field label not supported: spec.bogus');
    expect((await get('/api/v1/pods?labelSelector=a%20in%20(')).status).toBe(400);
    expect(parseLabelSelector('a in (x, y),b notin (z),!c,d!=e')).toHaveLength(4);
    expect(labelPredicate('x!=1')!({ metadata: {} })).toBe(true);
  });

  it('Table, PartialObjectMetadata, protobuf-only Accept, endpointslices v1beta1, gzip', async () => {
    await start({ gzipMinBytes: 10 });
    fake!.create('endpointslices', { metadata: { name: 's1', labels: { 'kubernetes.io/service-name': 'a' } }, addressType: 'IPv4', endpoints: [] });
    const table = await get('/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', {
      accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json',
    });
    expect(table.body).toMatchObject({ kind: 'Table', apiVersion: 'meta.k8s.io/v1', rows: [{ cells: ['s1', expect.any(String)], object: { kind: 'PartialObjectMetadata', metadata: { name: 's1' } } }] });
    const pom = await get('/apis/discovery.k8s.io/v1/endpointslices', {
      accept: 'application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json',
    });
    expect(pom.body.kind).toBe('PartialObjectMetadataList');
    expect(pom.body.items[0]).toEqual({ kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: expect.objectContaining({ name: 's1' }) });
    const pb = await get('/apis/discovery.k8s.io/v1beta1/namespaces/default/endpointslices/s1', { accept: 'application/vnd.kubernetes.protobuf' });
    expect(pb.headers['content-type']).toBe('application/json');
    expect(pb.body).toMatchObject({ kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1beta1', addressType: 'IPv4' });
    expect((await get('/apis/discovery.k8s.io/v1beta1/endpointslices')).body.apiVersion).toBe('discovery.k8s.io/v1beta1');

    const res = await request(fake!.url + '/apis/discovery.k8s.io/v1/endpointslices', { headers: { 'accept-encoding': 'gzip' } });
    expect(res.headers['content-encoding']).toBe('gzip');
    expect(JSON.parse(gunzipSync(Buffer.from(await res.body.arrayBuffer())).toString()).items).toHaveLength(1);
    expect(fake!.gzipped.map((r) => r.url)).toEqual(['/apis/discovery.k8s.io/v1/endpointslices']);
  });

  it('large lists are fast', async () => {
    await start();
    const t0 = performance.now();
    for (let i = 0; i < 5000; i++) fake!.create('endpoints', { metadata: { name: `ep-${i}`, namespace: `ns-${i % 10}` }, subsets: [{ addresses: [{ ip: `10.0.${i >> 8}.${i & 255}` }] }] });
    const l = (await get('/api/v1/endpoints')).body;
    expect(l.items).toHaveLength(5000);
    expect(fake!.list('endpoints')).toHaveLength(5000);
    expect(performance.now() - t0).toBeLessThan(1500);
  });
});

describe('fake apiserver: watch', () => {
  it('rv unset / 0: synthetic ADDED then changes, flushed per event, headers first', async () => {
    await start();
    fake!.create('services', svc('a'));
    fake!.create('configmaps', { metadata: { name: 'cm' } });
    const w = await watch('/api/v1/namespaces/default/services?watch=true');
    expect(w.status).toBe(200);
    expect(w.headers['content-type']).toBe('application/json');
    expect(w.headers['transfer-encoding']).toBe('chunked');
    await w.waitFor(1);
    fake!.update('services', svc('a', { spec: { clusterIP: '10.0.0.5' } }));
    fake!.create('services', svc('b', {}, 'other')); // other namespace: not seen
    fake!.delete('services', 'default', 'a');
    expect(brief(await w.waitFor(3))).toEqual(['ADDED a@1', 'MODIFIED a@3', 'DELETED a@5']);
    expect(w.events[1].object).toMatchObject({ kind: 'Service', apiVersion: 'v1', spec: { clusterIP: '10.0.0.5' } });
    expect(w.events[2].object.spec.clusterIP).toBe('10.0.0.5'); // DELETED carries the last state
    expect(fake!.openWatches()).toBe(1);
    w.close();
  });

  it('from N: only changes after N, in rv order; legacy /watch/ path; 410 ERROR after compaction', async () => {
    await start();
    fake!.create('services', svc('a')); // 1
    fake!.create('services', svc('b')); // 2
    fake!.update('services', svc('a', { spec: { clusterIP: '10.0.0.7' } })); // 3
    const w = await watch('/api/v1/services?watch=1&resourceVersion=1');
    fake!.delete('services', 'default', 'b'); // 4
    expect(brief(await w.waitFor(3))).toEqual(['ADDED b@2', 'MODIFIED a@3', 'DELETED b@4']);
    w.close();

    const legacy = await watch('/api/v1/watch/namespaces/default/services/a?resourceVersion=2');
    expect(brief(await legacy.waitFor(1))).toEqual(['MODIFIED a@3']);
    legacy.close();

    fake!.compact();
    const old = await watch('/api/v1/services?watch=true&resourceVersion=2');
    expect(old.status).toBe(200);
    await old.waitEnd();
    expect(old.events).toEqual([
      { type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: 'Expired', code: 410, message: 'too old resource version: 2 (4)' } },
    ]);
    // resuming exactly at the compaction point still works
    const fresh = await watch('/api/v1/services?watch=true&resourceVersion=4');
    fake!.create('services', svc('c'));
    expect(brief(await fresh.waitFor(1))).toEqual(['ADDED c@5']);
    fresh.close();
  });

  it('history is bounded', async () => {
    await start({ historySize: 3 });
    for (let i = 0; i < 6; i++) fake!.create('configmaps', { metadata: { name: `c${i}` } });
    const old = await watch('/api/v1/configmaps?watch=true&resourceVersion=2');
    await old.waitEnd();
    expect(old.events[0].object.code).toBe(410);
    const ok = await watch('/api/v1/configmaps?watch=true&resourceVersion=3');
    expect(brief(await ok.waitFor(3))).toEqual(['ADDED c3@4', 'ADDED c4@5', 'ADDED c5@6']);
    ok.close();
  });

  it('sendInitialEvents: ADDEDs, then the initial-events-end bookmark, then changes', async () => {
    await start();
    fake!.create('services', svc('a'));
    fake!.create('services', svc('b'));
    fake!.create('nodes', { metadata: { name: 'n' } });
    const w = await watch('/api/v1/services?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion=2');
    await w.waitFor(3);
    fake!.delete('services', 'default', 'a');
    await w.waitFor(4);
    expect(w.events.map((e) => e.type)).toEqual(['ADDED', 'ADDED', 'BOOKMARK', 'DELETED']);
    expect(w.events[2].object).toEqual({
      kind: 'Service', apiVersion: 'v1',
      metadata: { resourceVersion: '3', annotations: { 'k8s.io/initial-events-end': 'true' } },
    });
    w.close();

    const bad = await get('/api/v1/services?watch=true&sendInitialEvents=true&allowWatchBookmarks=true');
    expect(bad.status).toBe(422);
    expect(bad.body.message).toContain('sendInitialEvents requires setting resourceVersionMatch to NotOlderThan');
    expect((await get('/api/v1/services?watch=true&resourceVersionMatch=NotOlderThan')).status).toBe(422);
  });

  it('selector transitions: ADDED when starting to match, DELETED (previous content, event rv) when stopping', async () => {
    await start();
    fake!.create('pods', { metadata: { name: 'p', labels: { app: 'x' } }, spec: { nodeName: 'n1' } }); // 1
    const w = await watch('/api/v1/pods?watch=true&resourceVersion=1&labelSelector=app%3Dx');
    const f = await watch('/api/v1/pods?watch=true&resourceVersion=1&fieldSelector=spec.nodeName%3Dn1');
    fake!.update('pods', { metadata: { name: 'p', labels: { app: 'y' } }, spec: { nodeName: 'n1' } }); // 2: stops matching w
    fake!.update('pods', { metadata: { name: 'p', labels: { app: 'x' } }, spec: { nodeName: 'n1' } }); // 3: matches again
    fake!.update('pods', { metadata: { name: 'p', labels: { app: 'x' } }, spec: { nodeName: 'n2' } }); // 4: leaves f
    expect(brief(await w.waitFor(3))).toEqual(['DELETED p@2', 'ADDED p@3', 'MODIFIED p@4']);
    expect(w.events[0].object.metadata.labels).toEqual({ app: 'x' }); // previous content
    expect(brief(await f.waitFor(3))).toEqual(['MODIFIED p@2', 'MODIFIED p@3', 'DELETED p@4']);
    expect(f.events[2].object.spec.nodeName).toBe('n1');
    w.close();
    f.close();
  });

  it('periodic bookmarks only with allowWatchBookmarks', async () => {
    await start({ bookmarkIntervalMs: 30 });
    fake!.create('nodepools', { metadata: { name: 'p' } });
    const w = await watch('/apis/apps.openyurt.io/v1beta1/nodepools?watch=true&resourceVersion=1&allowWatchBookmarks=true');
    const plain = await watch('/apis/apps.openyurt.io/v1beta1/nodepools?watch=true&resourceVersion=1');
    await w.waitFor(2);
    expect(w.events[0]).toEqual({ type: 'BOOKMARK', object: { kind: 'NodePool', apiVersion: 'apps.openyurt.io/v1beta1', metadata: { resourceVersion: '1' } } });
    expect(plain.events).toEqual([]);
    w.close();
    plain.close();
  });

  it('timeoutSeconds ends the stream cleanly; dropWatches cuts streams', async () => {
    await start();
    const t = await watch('/api/v1/services?watch=true&timeoutSeconds=1');
    const a = await watch('/api/v1/services?watch=true');
    const b = await watch('/apis/coordination.k8s.io/v1/leases?watch=true');
    const c = await watch('/api/v1/pods?watch=true');
    expect(fake!.openWatches()).toBe(4);
    c.close(); // client going away is noticed
    for (let i = 0; i < 50 && fake!.openWatches() > 3; i++) await new Promise((r) => setTimeout(r, 10));
    expect(fake!.openWatches()).toBe(3);
    await t.waitEnd(3000);
    expect(t.error).toBeUndefined();
    expect(fake!.openWatches()).toBe(2);
    fake!.dropWatches();
    await a.waitEnd();
    await b.waitEnd();
    expect(a.error).toBeDefined();
    expect(fake!.openWatches()).toBe(0);
  });

  it('expireWatches ends the watches of one resource and namespace with a 410 ERROR event', async () => {
    await start();
    const here = await watch('/api/v1/namespaces/a/services?watch=true');
    const elsewhere = await watch('/api/v1/namespaces/b/services?watch=true');
    const leases = await watch('/apis/coordination.k8s.io/v1/leases?watch=true');
    expect(fake!.expireWatches('services', 'a')).toBe(1);
    await here.waitEnd();
    expect(here.error).toBeUndefined();
    expect(here.events).toMatchObject([{ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } }]);
    expect(fake!.openWatches()).toBe(2);
    expect(fake!.expireWatches('services')).toBe(1);
    await elsewhere.waitEnd();
    expect(leases.ended).toBe(false);
    leases.close();
  });

  it('watch with a too-large rv gets a 504 ERROR event; Table watch', async () => {
    await start();
    const w = await watch('/api/v1/services?watch=true&resourceVersion=50');
    await w.waitEnd();
    expect(w.events[0].object).toMatchObject({ code: 504, reason: 'Timeout' });
    const t = await watch('/api/v1/services?watch=true', { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json' });
    fake!.create('services', svc('a'));
    fake!.create('services', svc('b'));
    await t.waitFor(2);
    expect(t.events[0].object).toMatchObject({ kind: 'Table', rows: [{ cells: ['a', expect.any(String)] }] });
    expect(t.events[0].object.columnDefinitions).toHaveLength(2);
    expect(t.events[1].object.columnDefinitions).toBeNull();
    t.close();
  });
});

describe('fake apiserver: upgrade', () => {
  it('exec upgrade answers 101 and echoes bytes', async () => {
    await start();
    fake!.create('pods', { metadata: { name: 'p' } });
    const port = Number(new URL(fake!.url).port);
    const sock = connect(port, '127.0.0.1');
    let data = '';
    sock.on('data', (d) => (data += d.toString('latin1')));
    sock.write(
      'POST /api/v1/namespaces/default/pods/p/exec?command=sh HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n' +
        'X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n',
    );
    await waitFor(() => data.includes('\r\n\r\n'), 5_000, 'the response head');
    expect(data).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    expect(data).toContain('Upgrade: SPDY/3.1');
    expect(data).toContain('X-Stream-Protocol-Version: v4.channel.k8s.io');
    data = '';
    sock.write('hello\x00\xff', 'latin1');
    await waitFor(() => data.length >= 7, 5_000, 'the echo');
    expect(data).toBe('hello\x00\xff');
    sock.destroy();
    expect(fake!.requests.at(-1)!.url).toContain('/exec?command=sh');
  });
});
