// Issue 14's Show, on the real control plane: a real kube-proxy (iptables mode, in a network
// namespace) reads through poolview for node n1 of pool A. Service "web" has endpoints on n1, on
// n2 (pool A) and on n3 (pool B). Its topologyKeys flip between openyurt.io/nodepool,
// kubernetes.io/hostname and none, n2 moves between the pools, and the targeting ConfigMap adds
// kube-proxy to a filter and takes it out again — SCOPE_CHANGES changes in a row (default 20),
// with node lease renewals in the background, once with EndpointSlice updates of another Service
// about once per second and once without. iptables-save is sampled every ~20 ms: with the churn,
// web never loses all its endpoints (kube-proxy's REJECT rule "has no endpoints") at any sample,
// and each change reaches the rules within 2 s, with no kube-proxy restart. How many changes fell
// back to DELETED+ADDED (poolview_scope_change_fallbacks_total) is printed for both runs.
import { afterAll, expect, it } from 'vitest';
import { createNodeNetns, describeWithKubeProxy, startKubeProxy, type KubeProxy, type NodeNetns, type ProxyRules } from '../support/kube-proxy.js';
import { startLeaseWriter, startSliceChurn, type BackgroundWriter } from '../support/background.js';
import { scopeChangeFallbacks } from '../support/model.js';
import { startTestPoolview, type TestPoolview } from '../support/poolview.js';
import { sleep } from '../support/processes.js';
import { sharedCluster, uniqueName } from '../support/shared-cluster.js';

const cluster = sharedCluster();
const TOPOLOGY = 'openyurt.io/topologyKeys';
const POOL_LABEL = 'apps.openyurt.io/nodepool';
const CHANGES = Number(process.env.SCOPE_CHANGES ?? 20);
/**
 * The bound for a change to reach kube-proxy's rules; changes over it are reported. With
 * the churn, a change waits up to 1 s for the next slice event, and kube-proxy syncs at most once a
 * second (the churn makes it sync every second): about 2 s at worst, so the assertion allows the
 * shared 2-core machine a second more.
 */
const CONVERGE_MS = 2_000;
const CONVERGE_LIMIT_MS = 3_000;
const SAMPLE_MS = 20;

const report: Record<string, unknown>[] = [];

afterAll(async () => {
  if (report.length) {
    console.log('[scope-change e2e] scope change → kube-proxy rules, iptables-save sampled every ~20 ms');
    console.table(report);
  }
  await cluster.close();
});

/** Samples the filter table every ~SAMPLE_MS; counts samples where `service` REJECTs for want of endpoints. */
function sampleRejects(netns: NodeNetns, service: string): { stop(): Promise<{ samples: number; rejects: number; meanIntervalMs: number }> } {
  let stopped = false;
  let samples = 0;
  let rejects = 0;
  const started = Date.now();
  const loop = (async () => {
    while (!stopped) {
      const t = Date.now();
      const filter = await netns.exec(['iptables-save', '-t', 'filter']).catch(() => '');
      if (filter) samples++;
      if (filter.includes(`"${service} has no endpoints"`)) rejects++;
      await sleep(Math.max(0, SAMPLE_MS - (Date.now() - t)));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return { samples, rejects, meanIntervalMs: Math.round((Date.now() - started) / Math.max(1, samples)) };
    },
  };
}

describeWithKubeProxy()('scope changes reach a real kube-proxy as one MODIFIED, without a traffic gap (issue 14)', () => {
  it.each([
    ['with EndpointSlice churn', true],
    ['without EndpointSlice churn', false],
  ])('%s', async (label, churn) => {
    const run = uniqueName('sc');
    const ns = run;
    const [poolA, poolB] = [`${run}-a`, `${run}-b`];
    const [n1, n2, n3] = [1, 2, 3].map((i) => `${run}-n${i}`) as [string, string, string];
    const ip = (i: number): string => `10.244.${i}.1`;
    const target = (...nodes: number[]): string[] => nodes.map((i) => `${ip(i)}:8080`).sort();
    const key = `${ns}/web:http`;

    let netns: NodeNetns | undefined;
    let pv: TestPoolview | undefined;
    let kubeProxy: KubeProxy | undefined;
    const background: BackgroundWriter[] = [];
    try {
      netns = await createNodeNetns();
      await cluster.createNamespace(ns);
      await cluster.createNodePool(poolA, { nodes: [n1, n2] });
      await cluster.createNodePool(poolB, { nodes: [n3] });
      await cluster.createNode(n1, { internalIP: netns.nodeIP, pool: poolA });
      await cluster.createNode(n2, { internalIP: '10.250.252.2', pool: poolA });
      await cluster.createNode(n3, { internalIP: '10.250.252.3', pool: poolB });
      background.push(startLeaseWriter(cluster, n1), startLeaseWriter(cluster, n2, 1000));
      // A ConfigMap of this test's own: other tests' poolviews keep the shared default.
      const configMap = { namespace: ns, name: 'yurt-hub-cfg' };
      await cluster.apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: configMap, data: {} });
      pv = await startTestPoolview(cluster, { nodeName: n1, bindAddress: netns.hostIP, configMap });
      kubeProxy = await startKubeProxy({ cluster, nodeName: n1, server: pv.httpsUrl, netns, createNode: false });
      const pid = kubeProxy.process.child.pid;

      const service = (topology: string | undefined) =>
        cluster.createService(ns, 'web', { ports: [{ name: 'http', port: 80, targetPort: 8080 }], annotations: topology === undefined ? undefined : { [TOPOLOGY]: topology } });
      await service('openyurt.io/nodepool');
      await cluster.createEndpointSlice(ns, 'web-1', {
        service: 'web',
        ports: [{ name: 'http', port: 8080 }],
        endpoints: [1, 2, 3].map((i) => ({ ip: ip(i), nodeName: [n1, n2, n3][i - 1] })),
      });
      if (churn) {
        await cluster.createService(ns, 'churn', { ports: [{ name: 'http', port: 80, targetPort: 8080 }] });
        background.push(startSliceChurn(cluster, ns, 'churn', n3));
      }
      const endpointsOf = (r: ProxyRules): string[] | undefined => {
        const svc = r.services.get(key);
        return svc && (svc.noEndpoints ? [] : svc.endpoints);
      };
      await kubeProxy.waitFor((r) => JSON.stringify(endpointsOf(r)) === JSON.stringify(target(1, 2)), 30_000, 'web with the endpoints of pool A');

      let targeted = false;
      const moveN2 = async (to: string) => {
        await cluster.setNodePoolNodes(to === poolA ? poolB : poolA, to === poolA ? [n3] : [n1]);
        await cluster.setNodePoolNodes(to, to === poolA ? [n1, n2] : [n2, n3]);
        await cluster.patch('v1', 'Node', n2, undefined, { metadata: { labels: { [POOL_LABEL]: to } } });
      };
      const changes: Array<[string, string[], () => Promise<unknown>]> = [
        ['topologyKeys → kubernetes.io/hostname', target(1), () => service('kubernetes.io/hostname')],
        ['topologyKeys removed', target(1, 2, 3), () => service(undefined)],
        ['topologyKeys → openyurt.io/nodepool', target(1, 2), () => service('openyurt.io/nodepool')],
        ['n2 moves to pool B', target(1), () => moveN2(poolB)],
        ['n2 moves back to pool A', target(1, 2), () => moveN2(poolA)],
        [
          'ConfigMap: kube-proxy in servicetopology, or out again',
          target(1, 2),
          () => cluster.apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: configMap, data: (targeted = !targeted) ? { servicetopology: 'kube-proxy' } : {} }),
        ],
      ];

      const fallbacksBefore = await scopeChangeFallbacks(pv.registry);
      const sampler = sampleRejects(netns, key);
      const took: number[] = [];
      const slow: string[] = [];
      for (let i = 0; i < CHANGES; i++) {
        const [change, want, action] = changes[i % changes.length]!;
        // kube-proxy syncs at most once per --iptables-min-sync-period (1 s): let the previous sync
        // age past it, so the time measured is poolview's path and kube-proxy's, not its rate limit.
        await sleep(1_200);
        const started = Date.now();
        await action();
        let last: ProxyRules | undefined;
        let ms = -1;
        while (Date.now() - started < 10_000) {
          last = await kubeProxy.rules();
          if (JSON.stringify(endpointsOf(last)) === JSON.stringify(want)) {
            ms = Date.now() - started;
            break;
          }
          await sleep(50);
        }
        if (ms < 0) throw new Error(`${label}, change ${i + 1} (${change}): kube-proxy has ${JSON.stringify(last && endpointsOf(last))}, not ${JSON.stringify(want)}\n${kubeProxy.logTail(30)}`);
        took.push(ms);
        if (ms > CONVERGE_MS) slow.push(`${i + 1}. ${change}: ${ms} ms`);
      }
      const sampled = await sampler.stop();
      const fallbacksAfter = await scopeChangeFallbacks(pv.registry);
      const fellBack = Object.fromEntries(Object.entries(fallbacksAfter).map(([reason, n]) => [reason, n - (fallbacksBefore[reason] ?? 0)]));
      const held = await pv.registry.getSingleMetric('poolview_scope_change_held_seconds')?.get();
      const heldSum = held?.values.find((v) => v.metricName?.endsWith('_sum'))?.value ?? 0;
      const heldCount = held?.values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0;
      const sorted = [...took].sort((a, b) => a - b);
      report.push({
        run: label,
        changes: CHANGES,
        'iptables samples': sampled.samples,
        'mean sample interval ms': sampled.meanIntervalMs,
        'samples with REJECT': sampled.rejects,
        'fallbacks (view×change)': JSON.stringify(fellBack),
        'transitions held, mean ms': heldCount ? Math.round((heldSum / heldCount) * 1000) : '-',
        'to rules p50 ms': sorted[Math.floor(sorted.length / 2)],
        'to rules max ms': sorted[sorted.length - 1],
        'over 2 s': slow.length,
      });
      if (slow.length) console.warn(`[scope-change e2e] ${label}: changes slower than ${CONVERGE_MS} ms:\n${slow.join('\n')}`);

      expect(kubeProxy.process.running()).toBe(true);
      expect(kubeProxy.process.child.pid).toBe(pid);
      if (churn) {
        // The rule of issue 14: one MODIFIED per change, so kube-proxy never syncs between a
        // DELETED and an ADDED and never REJECTs web's traffic.
        expect(sampled.rejects, 'iptables samples where web had no endpoints').toBe(0);
        expect(Math.max(...took), 'slowest change → rules, ms').toBeLessThan(CONVERGE_LIMIT_MS);
      }
    } finally {
      await kubeProxy?.stop();
      await pv?.close();
      await netns?.remove();
      for (const writer of background) await writer.stop();
      for (const n of [n1, n2, n3]) await cluster.delete('v1', 'Node', n);
      for (const p of [poolA, poolB]) await cluster.delete('apps.openyurt.io/v1beta2', 'NodePool', p);
      await cluster.delete('v1', 'Namespace', ns);
    }
  }, 900_000);
});
