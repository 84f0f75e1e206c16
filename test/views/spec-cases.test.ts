// The `watch_events` and `seed_scenario` cases of test/fixtures/openyurt-cases.yaml run through the
// view engine: poolview on the fake apiserver, a kube-proxy client that LISTs and then WATCHes from the
// list's resourceVersion, the case's upstream events in, the events the client gets out.
//
// Where poolview differs from yurt-hub on purpose (the yaml's header, docs/design.md §6), the
// test asserts poolview's behaviour and says so where it does: an object leaving the view is DELETED
// only if the client holds it, carrying the last version the client saw; one entering is ADDED.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFakeApiserver, type FakeApiserver, type KubeObject } from '../fake/apiserver.js';
import { startPoolview, type RunningPoolview } from '../../src/app.js';
import { upstreamFromUrl } from '../../src/upstream.js';
import { JsonValueQueue } from '../support/json-stream.js';
import { waitFor } from '../src/proxy-harness.js';
import { endpointSlice, loadSpec, NAMESPACE, nodePortService, sliceIps, topologyService, without, type SpecCase } from '../filters/spec-scope.js';

const KUBE_PROXY = 'kube-proxy/v1.35.4 (linux/amd64) kubernetes/test';
const LISTEN = 'nodeport.openyurt.io/listen';
const WAIT_MS = 10_000;

interface WatchEvent {
  type: string;
  object: KubeObject & { code?: number; reason?: string };
}

/** A kube-proxy as client-go runs it: LIST, then WATCH from the list's resourceVersion. */
interface Client {
  listed: KubeObject[];
  events: JsonValueQueue<WatchEvent>;
  /** The events about one object, bookmarks left out. */
  about(name: string): WatchEvent[];
  close(): void;
}

const services = (namespace: string) => `/api/v1/namespaces/${namespace}/services`;

async function list(pv: RunningPoolview, collection: string): Promise<{ resourceVersion: string; items: KubeObject[] }> {
  const res = await request(pv.url + collection, { headers: { 'user-agent': KUBE_PROXY, accept: 'application/json' } });
  expect(res.statusCode).toBe(200);
  const body = (await res.body.json()) as { metadata: { resourceVersion: string }; items: KubeObject[] };
  return { resourceVersion: body.metadata.resourceVersion, items: body.items };
}

async function listAndWatch(pv: RunningPoolview, collection: string): Promise<Client> {
  const listed = await list(pv, collection);
  const abort = new AbortController();
  const path = `${collection}?watch=true&allowWatchBookmarks=true&resourceVersion=${listed.resourceVersion}`;
  const res = await request(pv.url + path, { headers: { 'user-agent': KUBE_PROXY }, signal: abort.signal });
  expect(res.statusCode).toBe(200);
  res.body.on('error', () => {}); // aborted at close
  const events = new JsonValueQueue<WatchEvent>(res.body);
  return {
    listed: listed.items,
    events,
    about: (name) => events.values.filter((e) => e.type !== 'BOOKMARK' && e.object.metadata?.name === name),
    close: () => abort.abort(),
  };
}

describe('openyurt-cases through the view engine', () => {
  let fake: FakeApiserver;
  let leases: NodeJS.Timeout;
  /** poolview of a node in pool1, of a node in pool2, and of a node in no pool. */
  const pv: Record<'pool1' | 'pool2' | 'orphan', RunningPoolview> = {} as never;
  const clients: Client[] = [];

  beforeAll(async () => {
    fake = await startFakeApiserver({ bookmarkIntervalMs: 200 });
    for (const [node, pool] of [['n1', 'pool1'], ['n2', 'pool2']]) {
      fake.create('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: node, labels: { 'apps.openyurt.io/nodepool': pool } } });
      fake.create('nodepools', { apiVersion: 'apps.openyurt.io/v1beta2', kind: 'NodePool', metadata: { name: pool }, status: { nodes: [node] } });
    }
    fake.create('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n3' } });
    // Node leases move the revision on, as on a real cluster (consistent reads wait for that).
    fake.create('leases', { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'n1', namespace: 'kube-node-lease' } });
    leases = setInterval(() => fake.update('leases', fake.get('leases', 'kube-node-lease', 'n1')!), 100);
    const start = (nodeName: string) => startPoolview({ nodeName, port: 0, healthPort: 0, logLevel: 'warn' }, { upstream: upstreamFromUrl(fake.url) });
    [pv.pool1, pv.pool2, pv.orphan] = await Promise.all([start('n1'), start('n2'), start('n3')]);
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    clearInterval(leases);
    await Promise.all(Object.values(pv).map((p) => p?.close()));
    await fake?.close();
  });

  async function client(p: RunningPoolview, namespace: string, collection = services(namespace)): Promise<Client> {
    const c = await listAndWatch(p, collection);
    clients.push(c);
    return c;
  }

  /**
   * Writes a Service every client sees (a ClusterIP one: no filter touches it) and waits for it on
   * every client: events of the same namespace before it have all been delivered.
   */
  async function fence(namespace: string, ...cs: Client[]): Promise<void> {
    const name = `fence-${fake.rv()}`;
    fake.create('services', nodePortService({ name, namespace, type: 'ClusterIP' }));
    await Promise.all(cs.map((c) => c.events.next((e) => e.type === 'ADDED' && e.object.metadata.name === name, WAIT_MS)));
  }

  describe('seed_scenario', () => {
    const scenario = loadSpec().seed_scenario as SpecCase;
    const expected = scenario.expected_output.v1_5_and_later as Record<'node_in_pool1' | 'node_in_pool2' | 'orphan_node', string[]>;
    const typeOf = (line: string) => line.split(' ')[0]!;

    it('each node sees the Service come, move out of or stay in its view, and go, as yurt-hub v1.5+ (pool2: as the view contract)', async () => {
      const { namespace, name, type } = scenario.service as { namespace: string; name: string; type: string };
      const [c1, c2, c3] = await Promise.all([client(pv.pool1, namespace), client(pv.pool2, namespace), client(pv.orphan, namespace)]);
      const written: KubeObject[] = [];
      const steps = scenario.sequence as { event: string; listen: string }[];
      for (const [i, step] of steps.entries()) {
        const svc = nodePortService({ name, namespace, type, listen: step.listen });
        if (step.event === 'ADDED') written.push(fake.create('services', svc));
        else if (step.event === 'MODIFIED') written.push(fake.update('services', svc));
        // An apiserver's DELETED carries the object's last state (here listen `pool1,pool2`), not the
        // spec's `pool1`: for every node the outcome is the same, a DELETED of an object it holds.
        else written.push(fake.delete('services', namespace, name)!);
        // One event per step for pool1 and the orphan node; pool2's view still changes at every step.
        await waitFor(() => [c1, c2, c3].every((c) => c.about(name).length === i + 1), WAIT_MS, `step ${i + 1} on every client`);
        if (i === 1) {
          // list_after_shrink: a LIST from pool2 while the Service listens on pool1 only.
          expect((await list(pv.pool2, services(namespace))).items).toEqual(scenario.list_after_shrink.node_in_pool2.items);
        }
      }
      await fence(namespace, c1, c2, c3);

      // A node in pool1, and a node in no pool (nodeportisolation leaves its Services alone): every
      // upstream event, with upstream's object.
      for (const [c, want] of [[c1, expected.node_in_pool1], [c3, expected.orphan_node]] as const) {
        expect(c.about(name).map((e) => e.type)).toEqual(want.map(typeOf));
        expect(c.about(name).map((e) => e.object)).toEqual(written);
      }

      // A node in pool2. yurt-hub v1.5+: ADDED, DELETED (the MODIFIED object), MODIFIED (the client
      // upserts), DELETED. poolview, on purpose (view contract rules 2-3): the DELETED carries the
      // version the client holds, at the revision of the write that moved it out; coming back into the
      // view is an ADDED.
      const ours = expected.node_in_pool2.map(typeOf);
      expect(ours).toEqual(['ADDED', 'DELETED', 'MODIFIED', 'DELETED']);
      ours[2] = 'ADDED';
      const got = c2.about(name);
      expect(got.map((e) => e.type)).toEqual(ours);
      expect(got[0]!.object).toEqual(written[0]);
      expect(got[1]!.object).toEqual({ ...written[0], metadata: { ...written[0]!.metadata, resourceVersion: written[1]!.metadata.resourceVersion } });
      expect(got[2]!.object).toEqual(written[2]);
      expect(got[3]!.object).toEqual(written[3]);
    });
  });

  describe('servicetopology_watch', () => {
    const spec = loadSpec();
    const slices = `/apis/discovery.k8s.io/v1/namespaces/${NAMESPACE}/endpointslices`;

    beforeAll(() => {
      const a = spec.fixtures.A as { nodeLabels: Record<string, string>; nodePools: Record<string, string[]> };
      for (const [name, pool] of Object.entries(a.nodeLabels)) {
        fake.create('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { 'apps.openyurt.io/nodepool': pool } } });
      }
      for (const [name, nodes] of Object.entries(a.nodePools)) {
        fake.create('nodepools', { apiVersion: 'apps.openyurt.io/v1beta2', kind: 'NodePool', metadata: { name }, status: { nodes } });
      }
    });

    for (const c of spec.servicetopology_watch as SpecCase[]) {
      it(`${c.id}: ${c.note}`, async () => {
        expect(c.cluster.fixture).toBe('A');
        const p = await startPoolview(
          { nodeName: spec.meta.current_node, nodePoolName: c.config.poolNameFlag || undefined, port: 0, healthPort: 0, logLevel: 'warn' },
          { upstream: upstreamFromUrl(fake.url) },
        );
        try {
          fake.create('services', topologyService(c.cluster.serviceAnnotation));
          // poolview has the Service's topology once a slice with endpoints elsewhere only comes back emptied.
          fake.create('endpointslices', endpointSlice({ endpoints: [{ ip: '10.244.9.9', node: 'node2' }] }, { name: 'probe' }));
          const probe = async () => (await list(p, slices)).items.find((i) => i.metadata.name === 'probe');
          await waitFor(async () => (await probe())?.endpoints.length === 0, WAIT_MS, 'the topology applied');
          // The client holds the slice (an endpoint on this node); then the case's event comes upstream.
          const watcher = await client(p, NAMESPACE, slices);
          const held = fake.create('endpointslices', endpointSlice({ endpoints: [{ ip: '10.244.1.2', node: 'node1' }] }));
          expect(c.input_event.type).toBe('MODIFIED');
          const modified = fake.update('endpointslices', endpointSlice(c.input_event.object));
          const name = held.metadata.name;
          await waitFor(() => watcher.about(name).length === 2, WAIT_MS, 'two events');
          fake.create('endpointslices', endpointSlice({ endpoints: [] }, { name: 'fence' }));
          await watcher.events.next((e) => e.object.metadata?.name === 'fence', WAIT_MS);

          const got = watcher.about(name);
          expect(got.map((e) => e.type)).toEqual(['ADDED', c.expect_event.type]);
          expect(got[0]!.object).toEqual(held);
          expect(sliceIps(got[1]!.object)).toEqual(c.expect_event.endpoints);
          expect(without(got[1]!.object, 'endpoints')).toEqual(without(modified, 'endpoints'));
        } finally {
          await p.close();
        }
      });
    }
  });

  describe('watch_events', () => {
    const cases = loadSpec().watch_events as SpecCase[];
    /** An ADDED Service the client is watching for, created in its own namespace. */
    const input = (c: SpecCase, namespace: string, extra: Record<string, string> = {}) =>
      nodePortService({ ...c.input_event.object, namespace }, { annotations: extra });

    /** What a kube-proxy on a pool1 node gets for the case's upstream ADDED, up to a fence. */
    async function addedThrough(c: SpecCase, namespace: string, extra: Record<string, string> = {}) {
      const watcher = await client(pv.pool1, namespace);
      const stored = fake.create('services', input(c, namespace, extra));
      await fence(namespace, watcher);
      return { stored, events: watcher.about(stored.metadata.name) };
    }

    const runners: Record<string, (c: SpecCase) => Promise<void>> = {
      // W-01, W-02: discardcloudservice (and nodeportisolation) drop the Service. yurt-hub turns the
      // dropped ADDED into a DELETED for an object the client never had; poolview sends nothing, on
      // purpose (docs/design.md §6, contract rule 2). The fence proves the stream went on past it.
      'W-01': (c) => addedDropped(c, 'w-01'),
      'W-02': (c) => addedDropped(c, 'w-02'),
      'W-03': async (c) => {
        const { stored, events } = await addedThrough(c, 'w-03');
        expect(c.expect_event).toEqual({ type: 'ADDED', object: 'same-as-input' });
        expect(events).toEqual([{ type: 'ADDED', object: stored }]);
      },
      'W-D1': async (c) => {
        expect(c.expect_event.type).toBe('BOOKMARK');
        const watcher = await client(pv.pool1, 'w-d1');
        const from = fake.rv();
        const bookmark = await watcher.events.next((e) => e.type === 'BOOKMARK', WAIT_MS);
        expect(bookmark.object.kind).toBe('Service');
        expect(Number(bookmark.object.metadata.resourceVersion)).toBeGreaterThanOrEqual(from);
      },
      'W-D2': async (c) => {
        expect(c.expect_event.type).toBe('ERROR');
        const watcher = await client(pv.pool1, 'w-d2');
        await waitFor(() => fake.expireWatches('services', 'w-d2') > 0, WAIT_MS, 'an upstream watch of w-d2 to end');
        const error = await watcher.events.next((e) => e.type === 'ERROR', WAIT_MS);
        expect(error.object).toMatchObject({ kind: 'Status', code: 410, reason: 'Expired' });
      },
    };

    async function addedDropped(c: SpecCase, namespace: string): Promise<void> {
      expect(c.chain).toContain('discardcloudservice');
      expect(c.expect_event.type).toBe('DELETED');
      expect((await addedThrough(c, namespace)).events).toEqual([]);
    }

    it('has a runner for every case', () => {
      expect(cases.map((c) => c.id).sort()).toEqual(Object.keys(runners).sort());
    });
    for (const c of cases) it(`${c.id}: ${c.test ?? c.expect_event.note ?? c.input_event.type}`, () => runners[c.id]!(c));
  });
});
