// The watch cache on the fake apiserver: its answers byte for byte against the fake's own, the
// revision each read is served at, paging, selectors, watches from the history and outside it,
// streaming lists, bookmarks, a slow client, one upstream stream for many clients, a re-list's
// differences, and authorization.
import { jsonLineBatches } from '../../src/json-lines.js';
import { afterEach, describe, expect, it } from 'vitest';
import { request, type Dispatcher } from 'undici';
import { startFakeApiserver, type FakeApiserver } from '../fake/apiserver.js';
import { upstreamFromUrl } from '../../src/upstream.js';
import { createLogger } from '../../src/log.js';
import { Registry } from '../../src/metrics.js';
import { WatchCaches, type WatchCacheOptions } from '../../src/cache/index.js';
import type { Upstream } from '../../src/types.js';

const OWN = 'own-token';
const CLIENT = 'client-token';
const DENIED = 'denied-token';

let fake: FakeApiserver;
let caches: WatchCaches;
let through: Upstream;
let registry: Registry;

async function setup(opts: Partial<WatchCacheOptions> = {}, fakeOpts: Parameters<typeof startFakeApiserver>[0] = {}) {
  fake = await startFakeApiserver({ tokens: { [OWN]: 'poolview', [CLIENT]: 'client', [DENIED]: 'denied' }, deniedTokens: [DENIED], gzipMinBytes: 200, ...fakeOpts });
  registry = new Registry();
  caches = new WatchCaches(upstreamFromUrl(fake.url, OWN), { history: 100, authorizationTtlMs: 10_000, log: createLogger('silent'), registry, ...opts });
  through = caches.upstreamThroughCache();
}

afterEach(async () => {
  caches?.close();
  await fake?.close();
});

function service(name: string, labels: Record<string, string> = {}, namespace = 'default') {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace, labels }, spec: { ports: [{ port: 80 }] } };
}

async function get(path: string, token = CLIENT, dispatcher: Dispatcher = through.clientDispatcher) {
  const res = await request(fake.url + path, { dispatcher, headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
  return { status: res.statusCode, text: await res.body.text() };
}

/** The fake's own answer, straight. */
async function direct(path: string) {
  const res = await request(fake.url + path, { headers: { authorization: `Bearer ${OWN}`, accept: 'application/json' } });
  return { status: res.statusCode, text: await res.body.text() };
}

/** GETs of `path` the fake received with the client's token (0 = served from the cache). */
function upstreamGets(prefix: string, token = CLIENT): number {
  return fake.requests.filter((r) => r.method === 'GET' && r.url.startsWith(prefix) && r.headers.authorization === `Bearer ${token}`).length;
}

interface Watch {
  events: any[];
  ended: Promise<void>;
  stop(): void;
  waitFor(pred: (events: any[]) => boolean, ms?: number): Promise<void>;
}

async function watch(path: string, token = CLIENT, dispatcher: Dispatcher = through.clientDispatcher): Promise<Watch> {
  const abort = new AbortController();
  const res = await request(fake.url + path, { dispatcher, headers: { authorization: `Bearer ${token}` }, signal: abort.signal });
  expect(res.statusCode).toBe(200);
  const events: any[] = [];
  const wakers = new Set<() => void>();
  const ended = (async () => {
    try {
      for await (const lines of jsonLineBatches(res.body)) {
        for (const line of lines) events.push(JSON.parse(line));
        for (const w of wakers) w();
      }
    } catch {
      /* stopped */
    }
    for (const w of wakers) w();
  })();
  return {
    events,
    ended,
    stop: () => abort.abort(),
    async waitFor(pred, ms = 5000) {
      const deadline = Date.now() + ms;
      while (!pred(events)) {
        if (Date.now() > deadline) throw new Error(`timed out; events: ${JSON.stringify(events.map((e) => [e.type, e.object?.metadata?.name, e.object?.metadata?.resourceVersion]))}`);
        await new Promise<void>((r) => {
          wakers.add(r);
          setTimeout(r, 50);
        });
      }
    },
  };
}

const brief = (e: any) => [e.type, e.object.metadata.name, e.object.metadata.resourceVersion];

describe('watch cache: reads', () => {
  it('LIST at rv=0, NotOlderThan, Exact and consistent: the apiserver\'s bytes at the same revision, from the cache', async () => {
    await setup();
    for (let i = 0; i < 5; i++) fake.create('services', service(`s${i}`, { app: i % 2 ? 'odd' : 'even' }));
    const first = await get('/api/v1/services');
    expect(first.status).toBe(200);
    const rv1 = JSON.parse(first.text).metadata.resourceVersion;
    expect(first.text).toBe((await direct(`/api/v1/services?resourceVersion=${rv1}&resourceVersionMatch=Exact`)).text);

    fake.update('services', { ...service('s1', { app: 'changed' }) });
    fake.delete('services', 'default', 's2');
    fake.create('services', service('s9'));
    // Consistent: the writes just made are in it.
    const consistent = await get('/api/v1/services');
    expect(JSON.parse(consistent.text).metadata.resourceVersion).toBe(String(fake.rv()));
    expect(consistent.text).toBe((await direct('/api/v1/services')).text);
    // Exact at the earlier revision: rebuilt from the history.
    const exact = await get(`/api/v1/services?resourceVersion=${rv1}&resourceVersionMatch=Exact`);
    expect(exact.text).toBe(first.text);
    // NotOlderThan and rv=0: the current state.
    expect((await get(`/api/v1/services?resourceVersion=${rv1}&resourceVersionMatch=NotOlderThan`)).text).toBe(consistent.text);
    expect((await get('/api/v1/services?resourceVersion=0')).text).toBe(consistent.text);
    // Namespaced collections and GET of one object (at a revision), 404 worded as the apiserver's.
    expect((await get('/api/v1/namespaces/default/services')).text).toBe((await direct('/api/v1/namespaces/default/services')).text);
    for (const path of ['/api/v1/namespaces/default/services/s1', '/api/v1/namespaces/default/services/s2', '/api/v1/namespaces/other/services/s1']) {
      expect(await get(`${path}?resourceVersion=0`)).toEqual(await direct(path));
    }
    // resourceVersion=N on a GET: not older than N, i.e. the current object.
    expect(await get(`/api/v1/namespaces/default/services/s1?resourceVersion=${rv1}`)).toEqual(await direct('/api/v1/namespaces/default/services/s1'));
    expect(upstreamGets('/api/v1/')).toBe(0);
    // A consistent GET, or a consistent LIST of a few objects, costs as much to prove fresh as to ask: upstream.
    expect(await get('/api/v1/namespaces/default/services/s1')).toEqual(await direct('/api/v1/namespaces/default/services/s1'));
    expect(await get('/api/v1/services?limit=1')).toEqual(await direct('/api/v1/services?limit=1'));
    expect(upstreamGets('/api/v1/')).toBe(2);
  });

  it('a consistent read of a quiet resource is served once a probe shows nothing changed (other resources moved the revision)', async () => {
    await setup();
    fake.create('services', service('quiet'));
    await get('/api/v1/services?resourceVersion=0');
    // Writes elsewhere: the cluster's revision passes the cache's, with no event on services.
    for (let i = 0; i < 3; i++) fake.create('configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `c${i}`, namespace: 'default' } });
    const list = await get('/api/v1/services');
    expect(JSON.parse(list.text).metadata.resourceVersion).toBe(String(fake.rv()));
    expect(upstreamGets('/api/v1/services')).toBe(0);
    // The probe: a limit=1 LIST and a short watch, with poolview's credentials.
    expect(fake.requests.some((r) => r.url.includes('limit=1') && r.headers.authorization === `Bearer ${OWN}`)).toBe(true);
  });

  it('limit/continue pages from one snapshot; an expired continue token gets 410 Expired', async () => {
    await setup({ history: 5 });
    for (let i = 0; i < 7; i++) fake.create('services', service(`p${i}`));
    const all = JSON.parse((await direct('/api/v1/services')).text);
    const page1 = JSON.parse((await get('/api/v1/services?limit=3&resourceVersion=0')).text);
    expect(page1.items.map((s: any) => s.metadata.name)).toEqual(['p0', 'p1', 'p2']);
    expect(page1.metadata.remainingItemCount).toBe(4);
    fake.create('services', service('p00')); // after the snapshot: not in the pages
    await get('/api/v1/services'); // the cache has seen it
    const names = page1.items.map((s: any) => s.metadata.name);
    for (let token = page1.metadata.continue; token; ) {
      const page = JSON.parse((await get(`/api/v1/services?limit=3&continue=${encodeURIComponent(token)}`)).text);
      expect(page.metadata.resourceVersion).toBe(page1.metadata.resourceVersion);
      names.push(...page.items.map((s: any) => s.metadata.name));
      token = page.metadata.continue;
    }
    expect(names).toEqual(all.items.map((s: any) => s.metadata.name));
    // Past the window: 410 as the apiserver words it.
    for (let i = 0; i < 10; i++) fake.update('services', service('p0', { n: String(i) }));
    await get('/api/v1/services');
    const expired = await get(`/api/v1/services?limit=3&continue=${encodeURIComponent(page1.metadata.continue)}`);
    expect(expired.status).toBe(410);
    expect(JSON.parse(expired.text)).toMatchObject({ kind: 'Status', reason: 'Expired', code: 410 });
    expect(upstreamGets('/api/v1/services')).toBe(0);
  });

  it('label and field selectors as the apiserver evaluates them', async () => {
    await setup();
    fake.create('services', service('a', { app: 'x', tier: 'web' }));
    fake.create('services', service('b', { app: 'y' }));
    fake.create('services', service('c', {}, 'kube-system'));
    fake.create('services', service('d', { app: 'z', tier: 'db' }, 'kube-system'));
    fake.create('services', { ...service('headless'), spec: { clusterIP: 'None', ports: [{ port: 80 }] } });
    fake.create('services', { ...service('np'), spec: { type: 'NodePort', ports: [{ port: 80 }] } });
    const selectors = [
      'labelSelector=app%3Dx',
      'labelSelector=app%3D%3Dy',
      'labelSelector=app!%3Dx',
      'labelSelector=app%20in%20(x%2Cz)',
      'labelSelector=app%20notin%20(x)',
      'labelSelector=tier',
      'labelSelector=!tier',
      'labelSelector=app%2C!tier',
      'fieldSelector=metadata.name%3Dd',
      'fieldSelector=metadata.namespace!%3Ddefault',
      'fieldSelector=metadata.namespace%3Dkube-system%2Cmetadata.name!%3Dc&labelSelector=tier%3Ddb',
      // What kube-proxy sends for Services (client-go adds `timeout` to every request).
      'fieldSelector=spec.clusterIP!%3DNone&labelSelector=!service.kubernetes.io%2Fheadless%2C!service.kubernetes.io%2Fservice-proxy-name&timeout=7m7s',
      'fieldSelector=spec.type%3DClusterIP',
    ];
    for (const s of selectors) expect([s, (await get(`/api/v1/services?${s}`)).text]).toEqual([s, (await direct(`/api/v1/services?${s}`)).text]);
    expect(upstreamGets('/api/v1/services')).toBe(0);
    // Another field goes upstream unchanged.
    const other = await get('/api/v1/services?fieldSelector=spec.ports%3D1');
    expect(other.status).toBe((await direct('/api/v1/services?fieldSelector=spec.ports%3D1')).status);
    expect(upstreamGets('/api/v1/services')).toBe(1);
  });
});

describe('watch cache: watches', () => {
  it('from a revision in the history: the same events as the apiserver; with a selector, the transitions', async () => {
    await setup();
    fake.create('services', service('w1', { app: 'x' }));
    const from = JSON.parse((await get('/api/v1/services')).text).metadata.resourceVersion;
    fake.create('services', service('w2', { app: 'x' }));
    fake.update('services', service('w1', { app: 'y' })); // leaves app=x
    fake.update('services', service('w1', { app: 'x' })); // comes back
    fake.delete('services', 'default', 'w2');
    const expected = await watch(`/api/v1/services?watch=true&resourceVersion=${from}`, OWN, undefined as unknown as Dispatcher);
    await expected.waitFor((e) => e.length === 4);
    expected.stop();
    const all = await watch(`/api/v1/services?watch=true&resourceVersion=${from}`);
    await all.waitFor((e) => e.length === 4);
    expect(all.events).toEqual(expected.events);
    const selected = await watch(`/api/v1/services?watch=true&resourceVersion=${from}&labelSelector=app%3Dx`);
    const direct = await watch(`/api/v1/services?watch=true&resourceVersion=${from}&labelSelector=app%3Dx`, OWN, undefined as unknown as Dispatcher);
    await selected.waitFor((e) => e.length === 4);
    await direct.waitFor((e) => e.length === 4);
    expect(selected.events.map(brief)).toEqual([
      ['ADDED', 'w2', expect.any(String)],
      ['DELETED', 'w1', expect.any(String)],
      ['ADDED', 'w1', expect.any(String)],
      ['DELETED', 'w2', expect.any(String)],
    ]);
    expect(selected.events).toEqual(direct.events);
    // Live events after the history, too.
    fake.create('services', service('w3', { app: 'x' }));
    await selected.waitFor((e) => e.length === 5);
    expect(brief(selected.events[4])).toEqual(['ADDED', 'w3', String(fake.rv())]);
    for (const w of [all, selected, direct]) w.stop();
    expect(upstreamGets('/api/v1/services')).toBe(0);
  });

  it('from before the window: one ERROR 410 Expired event; rv unset / 0: the state as ADDED, then changes', async () => {
    await setup({ history: 3 });
    fake.create('services', service('o1'));
    const from = JSON.parse((await get('/api/v1/services')).text).metadata.resourceVersion;
    for (let i = 0; i < 6; i++) fake.update('services', service('o1', { n: String(i) }));
    await get('/api/v1/services');
    const old = await watch(`/api/v1/services?watch=true&resourceVersion=${from}`);
    await old.ended;
    expect(old.events).toHaveLength(1);
    expect(old.events[0]).toMatchObject({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired', message: expect.stringMatching(new RegExp(`^too old resource version: ${from} \\(\\d+\\)$`)) } });
    for (const rv of ['', '&resourceVersion=0']) {
      const w = await watch(`/api/v1/services?watch=true${rv}`);
      await w.waitFor((e) => e.length === 1);
      expect(brief(w.events[0])).toEqual(['ADDED', 'o1', String(fake.rv())]);
      w.stop();
    }
  });

  it('streaming list: ADDED of the state, the initial-events-end bookmark, then changes; periodic bookmarks; timeoutSeconds', async () => {
    await setup({ bookmarkIntervalMs: 300 });
    fake.create('services', service('s1'));
    fake.create('services', service('s2'));
    const w = await watch('/api/v1/services?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=2');
    await w.waitFor((e) => e.length >= 3);
    expect(w.events.slice(0, 3).map((e) => e.type)).toEqual(['ADDED', 'ADDED', 'BOOKMARK']);
    expect(w.events[2].object.metadata).toEqual({ resourceVersion: String(fake.rv()), annotations: { 'k8s.io/initial-events-end': 'true' } });
    fake.create('services', service('s3'));
    await w.waitFor((e) => e.some((x) => x.type === 'ADDED' && x.object.metadata.name === 's3'));
    await w.waitFor((e) => e.filter((x) => x.type === 'BOOKMARK').length >= 2);
    const started = Date.now();
    await w.ended; // timeoutSeconds=2 ends it cleanly
    expect(Date.now() - started).toBeLessThan(2500);
    expect(w.events.at(-1).type).toBe('BOOKMARK');
  });

  it('a client that does not read is ended past its buffer bound; the others and the upstream stream go on', async () => {
    await setup({ maxBufferedBytes: 64 * 1024 });
    const slowRes = await request(fake.url + '/api/v1/services?watch=true&resourceVersion=0', { dispatcher: through.clientDispatcher, headers: { authorization: `Bearer ${CLIENT}` } });
    const fast = await watch('/api/v1/services?watch=true&resourceVersion=0');
    const big = 'x'.repeat(4000);
    for (let i = 0; i < 200; i++) fake.create('services', { ...service(`big${i}`), metadata: { name: `big${i}`, namespace: 'default', annotations: { big } } });
    await fast.waitFor((e) => e.length === 200, 10_000);
    const cut = await registry.getSingleMetricAsString('poolview_cache_slow_watches_ended_total');
    expect(cut).toMatch(/resource="services"} 1/);
    // The slow client's stream ends (after what was buffered): it re-watches from its last revision.
    const text = await slowRes.body.text();
    expect(text.split('\n').filter(Boolean).length).toBeLessThan(200);
    fast.stop();
  });
});

describe('watch cache: upstream', () => {
  it('several clients, one upstream LIST and one WATCH; a re-list after 410 sends the differences (DELETED for what vanished)', async () => {
    await setup();
    fake.create('services', service('keep'));
    fake.create('services', service('gone'));
    const watches = await Promise.all([1, 2, 3].map(() => watch('/api/v1/services?watch=true&resourceVersion=0')));
    await Promise.all(watches.map((w) => w.waitFor((e) => e.length === 2)));
    for (let i = 0; i < 3; i++) await get('/api/v1/services?resourceVersion=0');
    while (fake.openWatches() === 0) await new Promise((r) => setTimeout(r, 20));
    const own = (pred: (url: string) => boolean) => fake.requests.filter((r) => r.headers.authorization === `Bearer ${OWN}` && r.url.startsWith('/api/v1/services') && pred(r.url)).length;
    expect(own((u) => !u.includes('watch=') && !u.includes('limit=1&') && !u.endsWith('limit=1'))).toBe(1);
    expect(own((u) => u.includes('watch=true') && !/timeoutSeconds=3(&|$)/.test(u))).toBe(1);
    expect(fake.requests.find((r) => r.url.startsWith('/api/v1/services?limit=500'))?.headers['accept-encoding']).toBe('gzip');

    // The upstream stream breaks; meanwhile one object goes, one comes, one changes, and history is compacted.
    fake.dropWatches();
    fake.delete('services', 'default', 'gone');
    fake.create('services', service('new'));
    fake.update('services', service('keep', { v: '2' }));
    fake.compact();
    await Promise.all(watches.map((w) => w.waitFor((e) => e.length === 5, 10_000)));
    for (const w of watches) {
      expect(w.events.slice(2).map((e) => [e.type, e.object.metadata.name]).sort()).toEqual([['ADDED', 'new'], ['DELETED', 'gone'], ['MODIFIED', 'keep']]);
      w.stop();
    }
    expect((await get('/api/v1/services')).text).toBe((await direct('/api/v1/services')).text);
    expect(own((u) => u.startsWith('/api/v1/services?limit=500'))).toBe(2);
  });
});

describe('watch cache: authorization', () => {
  it('a client the apiserver does not allow is sent upstream with its own credentials; an allowed one is reviewed once per TTL', async () => {
    await setup();
    fake.create('services', service('a'));
    expect((await get('/api/v1/services', DENIED)).status).toBe(200); // the fake has no RBAC: its own answer
    expect(upstreamGets('/api/v1/services', DENIED)).toBe(1);
    await get('/api/v1/services');
    await get('/api/v1/services?resourceVersion=0');
    expect(upstreamGets('/api/v1/services')).toBe(0);
    const reviews = fake.requests.filter((r) => r.url.includes('selfsubjectaccessreviews'));
    expect(reviews.map((r) => r.headers.authorization)).toEqual([`Bearer ${DENIED}`, `Bearer ${CLIENT}`]);
    // No credentials: no review, straight upstream.
    const anonymous = await request(fake.url + '/api/v1/services', { dispatcher: through.clientDispatcher });
    expect(anonymous.statusCode).toBe(401);
    await anonymous.body.dump();
    // Poolview's own dispatcher needs no review.
    expect((await get('/api/v1/services', OWN, through.ownDispatcher)).status).toBe(200);
    expect(fake.requests.filter((r) => r.url === '/api/v1/services').map((r) => r.headers.authorization)).toEqual([`Bearer ${DENIED}`, undefined]);
  });
});
