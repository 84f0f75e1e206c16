// The view contract (docs/design.md, rules 1-5), checked by the randomized model on the in-process fake apiserver.
// Replay a failure with MODEL_SEED=<seed> (and MODEL_STEPS=<n>).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeApiserver, type FakeApiserver } from '../fake/apiserver.js';
import { startPoolview, type RunningPoolview } from '../../src/app.js';
import { upstreamFromUrl } from '../../src/upstream.js';
import { runModel, type ModelDriver } from '../support/model.js';
import type { KubeObject } from '../../filters/types.js';

const POOLS = { A: ['n1', 'n2'], B: ['n3', 'n4'], C: ['n5'] };

function fakeDriver(fake: FakeApiserver): ModelDriver {
  const put = (resource: string, obj: KubeObject) => {
    const existing = fake.get(resource, obj.metadata.namespace, obj.metadata.name!);
    if (existing) fake.update(resource, obj);
    else fake.create(resource, obj);
  };
  return {
    put: async (resource, obj) => put(resource, obj),
    remove: async (resource, namespace, name) => void fake.delete(resource, namespace, name),
    setPoolNodes: async (pool, nodes) =>
      put('nodepools', { apiVersion: 'apps.openyurt.io/v1beta2', kind: 'NodePool', metadata: { name: pool }, spec: { type: 'Edge' }, status: { nodes } }),
    setNodePool: async (node, pool) => {
      const current = fake.get('nodes', undefined, node)!;
      const labels = { ...current.metadata.labels };
      if (pool) labels['apps.openyurt.io/nodepool'] = pool;
      else delete labels['apps.openyurt.io/nodepool'];
      fake.update('nodes', { ...current, metadata: { ...current.metadata, labels } });
    },
    list: async (resource) => fake.list(resource) as KubeObject[],
    compact: async () => fake.compact(),
    dropWatches: async () => fake.dropWatches(),
  };
}

describe('view contract model (fake apiserver)', () => {
  let fake: FakeApiserver;
  let proxy: RunningPoolview;
  let leases: NodeJS.Timeout;

  beforeAll(async () => {
    fake = await startFakeApiserver({ bookmarkIntervalMs: 200 });
    for (const [pool, nodes] of Object.entries(POOLS)) {
      for (const node of nodes) fake.create('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: node, labels: { 'apps.openyurt.io/nodepool': pool } } });
      fake.create('nodepools', { apiVersion: 'apps.openyurt.io/v1beta2', kind: 'NodePool', metadata: { name: pool }, spec: { type: 'Edge' }, status: { nodes } });
    }
    // Like kubelets renewing node leases: upstream revisions keep moving in a real cluster.
    fake.create('leases', { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'n1', namespace: 'kube-node-lease' } });
    leases = setInterval(() => fake.update('leases', fake.get('leases', 'kube-node-lease', 'n1')!), 100);
    proxy = await startPoolview({ nodeName: 'n1', port: 0, healthPort: 0, logLevel: 'warn' }, { upstream: upstreamFromUrl(fake.url) });
  });
  afterAll(async () => {
    clearInterval(leases);
    await proxy?.close();
    await fake?.close();
  });

  const seeds = process.env.MODEL_SEED ? [Number(process.env.MODEL_SEED)] : [1, 2, 3, Date.now() % 1_000_000];
  for (const seed of seeds) {
    it(`keeps rules 1-5 over random steps, seed ${seed}`, async () => {
      const result = await runModel({
        driver: fakeDriver(fake),
        proxyUrl: proxy.url,
        nodeName: 'n1',
        namespace: `model-${seed}`,
        seed,
        steps: Number(process.env.MODEL_STEPS ?? 600),
        pools: POOLS,
        // With credentials, the clients' requests are answered by poolview's watch cache (after a review),
        // so every client of a resource reads one cache through drops, compactions and re-lists.
        tokens: { admin: 'model-client' },
        log: (msg) => console.log(msg),
      });
      expect(result.checks).toBeGreaterThan(1);
      const served = await proxy.registry.getSingleMetricAsString('poolview_cache_requests_served_total');
      expect(served).toMatch(/resource="endpointslices",verb="watch"} [1-9]/);
    }, 300_000);
  }
});
