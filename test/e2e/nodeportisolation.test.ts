// nodeportisolation on the real control plane with two real kube-proxies (iptables mode, each in its
// own network namespace): one on a node of pool1, one on a node of pool2, each reading through its
// own poolview. Scope changes — the listen annotation, auto-listen endpoint pools, a node moving
// between pools — reach kube-proxy's iptables rules within seconds, without a kube-proxy restart.
// The change→rules times are measured (rules polled every ~50 ms) and logged.
import { readFileSync } from 'node:fs';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Cluster, KubeObject } from '../support/cluster.js';
import { createNodeNetns, describeWithKubeProxy, startKubeProxy, type KubeProxy, type NodeNetns, type ProxyRules } from '../support/kube-proxy.js';
import { startTestPoolview, type TestPoolview } from '../support/poolview.js';
import { sleep } from '../support/processes.js';
import { sharedCluster, uniqueName } from '../support/shared-cluster.js';

const LISTEN = 'nodeport.openyurt.io/listen';
const AUTO_LISTEN = 'nodeport.openyurt.io/auto-listen';
const POOL_LABEL = 'apps.openyurt.io/nodepool';
const POOL_GATES = 'poolview.openyurt.io/feature-gates';
/** Budget of one change → rules transition (the "within seconds"). */
const BUDGET_MS = 15_000;
const POLL_MS = 50;

const cluster = sharedCluster();

interface WatchedEvent {
  type: string;
  name: string;
  at: number;
}

/**
 * A watch on Services through a poolview, as kube-proxy opens it (its User-Agent and token, HTTPS
 * verified against the cluster CA): records when each event arrives, to split a change→rules time
 * into poolview's part and kube-proxy's part.
 */
async function watchServicesAsKubeProxy(c: Cluster, pv: TestPoolview): Promise<{ events: WatchedEvent[]; close(): Promise<void> }> {
  const agent = new Agent({ connect: { ca: readFileSync(c.caFile) } });
  const headers = { authorization: `Bearer ${c.tokens.kubeProxy}`, accept: 'application/json', 'user-agent': 'kube-proxy/v1.35.4 (linux/amd64) kubernetes/e2e' };
  const list = await request(`${pv.httpsUrl}/api/v1/services`, { headers, dispatcher: agent });
  const rv = ((await list.body.json()) as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
  const controller = new AbortController();
  const res = await request(`${pv.httpsUrl}/api/v1/services?watch=1&allowWatchBookmarks=true&resourceVersion=${rv}`, {
    headers,
    dispatcher: agent,
    signal: controller.signal,
  });
  const events: WatchedEvent[] = [];
  let buf = '';
  res.body.setEncoding('utf8');
  res.body.on('data', (chunk: string) => {
    const at = performance.now();
    buf += chunk;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line) continue;
      const e = JSON.parse(line) as { type: string; object: KubeObject };
      events.push({ type: e.type, name: `${e.object.metadata?.namespace}/${e.object.metadata?.name}`, at });
    }
  });
  res.body.on('error', () => {});
  return {
    events,
    close: async () => {
      controller.abort();
      await agent.close().catch(() => {});
    },
  };
}

interface Site {
  pool: string;
  node: string;
  netns?: NodeNetns;
  poolview?: TestPoolview;
  kubeProxy?: KubeProxy;
  pid?: number;
  watch?: { events: WatchedEvent[]; close(): Promise<void> };
}

const ns = uniqueName('npi');
const pool1 = uniqueName('pool1');
const pool2 = uniqueName('pool2');
const site1: Site = { pool: pool1, node: uniqueName('npi-a') };
const site2: Site = { pool: pool2, node: uniqueName('npi-b') };
const timings: string[] = [];

function kp(site: Site): KubeProxy {
  return site.kubeProxy!;
}

const hasNodePort = (key: string, nodePort: number) => (r: ProxyRules) => r.services.get(key)?.nodePort === nodePort;
const hasNoService = (key: string) => (r: ProxyRules) => !r.services.has(key);

/**
 * Polls the rules of `changes` every ~50 ms until its predicate holds and, on each round, checks the
 * `holds` sites' predicates stay true the whole time (e.g. pool1 keeps the node port while pool2
 * loses it). Returns the elapsed time since `since` (taken just before the write).
 */
async function measure(
  what: string,
  since: number,
  changes: { site: Site; until: (r: ProxyRules) => boolean; event?: { type: string; name: string } },
  holds: { site: Site; what: string; check: (r: ProxyRules) => boolean }[] = [],
): Promise<number> {
  const deadline = since + 2 * BUDGET_MS;
  let last: ProxyRules | undefined;
  for (;;) {
    const [mine, ...others] = await Promise.all([kp(changes.site).rules(), ...holds.map((h) => kp(h.site).rules())]);
    last = mine;
    others.forEach((r, i) => {
      const h = holds[i]!;
      if (!h.check(r)) throw new Error(`${what}: ${h.what} did not hold on ${h.site.node} (${h.site.pool}) during the change\n${JSON.stringify([...r.services.values()], null, 1)}`);
    });
    if (changes.until(mine)) break;
    if (performance.now() > deadline) {
      throw new Error(
        `${what}: not seen within ${2 * BUDGET_MS} ms on ${changes.site.node}\n--- services ---\n${JSON.stringify([...last.services.values()], null, 1)}\n--- kube-proxy log ---\n${kp(changes.site).logTail(30)}`,
      );
    }
    await sleep(POLL_MS);
  }
  const ms = Math.round(performance.now() - since);
  let line = `${what}: ${ms} ms`;
  if (changes.event) {
    const { type, name } = changes.event;
    const seen = changes.site.watch?.events.find((e) => e.at >= since && e.type === type && e.name === name);
    expect(seen, `${type} ${name} on ${changes.site.node}'s kube-proxy-style watch`).toBeDefined();
    line += ` (poolview ${type} event after ${Math.round(seen!.at - since)} ms)`;
  }
  timings.push(line);
  console.log(`[nodeportisolation] ${line}`);
  expect(ms, what).toBeLessThan(BUDGET_MS);
  return ms;
}

/** Both kube-proxies still run as the processes started in beforeAll: no restart was needed. */
function expectNoRestart(): void {
  for (const site of [site1, site2]) {
    expect(kp(site).process.running(), `kube-proxy ${site.node} running`).toBe(true);
    expect(kp(site).process.child.pid).toBe(site.pid);
  }
}

/** Asserts for ~`ms` that `site` does not program `key` (used where the absence is the steady state). */
async function staysAbsent(site: Site, key: string, ms: number): Promise<void> {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    expect((await kp(site).rules()).services.has(key), `${key} on ${site.node} (${site.pool})`).toBe(false);
    await sleep(200);
  }
}

const describeKp = describeWithKubeProxy();

describeKp('nodeportisolation with two real kube-proxies (pool1, pool2)', () => {
  beforeAll(async () => {
    await cluster.createNamespace(ns);
    for (const site of [site1, site2]) site.netns = await createNodeNetns();
    await cluster.createNodePool(pool1, { nodes: [site1.node] });
    await cluster.createNodePool(pool2, { nodes: [site2.node] });
    for (const site of [site1, site2]) {
      await cluster.createNode(site.node, { internalIP: site.netns!.nodeIP, pool: site.pool });
    }
    // As the DaemonSet runs it: no --nodepool-name, the pool comes from the Node and the NodePools
    // (so the node can move). The gate is on from the start: it changes nothing for `listen`.
    for (const site of [site1, site2]) {
      site.poolview = await startTestPoolview(cluster, {
        nodeName: site.node,
        bindAddress: site.netns!.hostIP,
        featureGates: { NodePortAutoListen: true },
      });
    }
    await Promise.all(
      [site1, site2].map(async (site) => {
        site.kubeProxy = await startKubeProxy({ cluster, nodeName: site.node, server: site.poolview!.httpsUrl, netns: site.netns, createNode: false });
        site.pid = site.kubeProxy.process.child.pid;
        site.watch = await watchServicesAsKubeProxy(cluster, site.poolview!);
      }),
    );
  });

  afterAll(async () => {
    if (timings.length > 0) console.log(`[nodeportisolation] change→rules times:\n  ${timings.join('\n  ')}`);
    for (const site of [site1, site2]) {
      await site.watch?.close();
      await site.kubeProxy?.stop();
      await site.poolview?.close();
      await site.netns?.remove();
      await cluster.delete('v1', 'Node', site.node);
    }
    await cluster.delete('apps.openyurt.io/v1beta2', 'NodePool', pool1);
    await cluster.delete('apps.openyurt.io/v1beta2', 'NodePool', pool2);
    await cluster.delete('v1', 'Namespace', ns);
    await cluster.close();
  });

  it('listen: pool1,pool2 → pool1 → pool1,pool2 moves the node port off pool2 and back, pool1 keeps it', async () => {
    const svc = (await cluster.createService(ns, 'listen', {
      type: 'NodePort',
      ports: [{ name: 'http', port: 80, targetPort: 8080 }],
      annotations: { [LISTEN]: `${pool1},${pool2}` },
    })) as KubeObject & { spec: { clusterIP: string; ports: { nodePort: number }[] } };
    const nodePort = svc.spec.ports[0]!.nodePort;
    await cluster.createEndpointSlice(ns, 'listen-1', {
      service: 'listen',
      ports: [{ name: 'http', port: 8080 }],
      endpoints: [{ ip: '10.244.1.10', nodeName: site1.node }],
    });
    const key = `${ns}/listen:http`;
    for (const site of [site1, site2]) {
      const rules = await kp(site).waitFor((r) => r.services.get(key)?.endpoints.length === 1 && r.services.get(key)?.nodePort === nodePort, 30_000, `${key} on ${site.node}`);
      expect(rules.services.get(key)).toMatchObject({ clusterIP: svc.spec.clusterIP, port: 80, nodePort, endpoints: ['10.244.1.10:8080'], noEndpoints: false });
      expect(rules.raw).toMatch(new RegExp(`-A KUBE-NODEPORTS .*"${key}".* --dport ${nodePort} `));
    }

    let t = performance.now();
    await cluster.patch('v1', 'Service', 'listen', ns, { metadata: { annotations: { [LISTEN]: pool1 } } });
    await measure('listen pool1,pool2 → pool1: gone from pool2', t, { site: site2, until: hasNoService(key), event: { type: 'DELETED', name: `${ns}/listen` } }, [
      { site: site1, what: 'pool1 keeps the node port', check: hasNodePort(key, nodePort) },
    ]);
    expect((await kp(site2).rules()).raw).not.toContain(`--dport ${nodePort} `);
    expect((await kp(site1).rules()).services.get(key)).toMatchObject({ nodePort, endpoints: ['10.244.1.10:8080'] });
    expectNoRestart();

    t = performance.now();
    await cluster.patch('v1', 'Service', 'listen', ns, { metadata: { annotations: { [LISTEN]: `${pool1},${pool2}` } } });
    await measure('listen pool1 → pool1,pool2: back on pool2', t, {
      site: site2,
      until: (r) => hasNodePort(key, nodePort)(r) && r.services.get(key)?.endpoints.length === 1,
      event: { type: 'ADDED', name: `${ns}/listen` },
    }, [
      { site: site1, what: 'pool1 keeps the node port', check: hasNodePort(key, nodePort) },
    ]);
    expect((await kp(site2).rules()).services.get(key)).toMatchObject({ clusterIP: svc.spec.clusterIP, nodePort, endpoints: ['10.244.1.10:8080'] });
    expectNoRestart();
  });

  it('auto-listen (NodePortAutoListen=true): visible exactly on the pools of the ready endpoints, following the EndpointSlice', async () => {
    const endpoints = (nodes: Site[]) => nodes.map((s, i) => ({ ip: `10.244.2.${10 + i}`, nodeName: s.node }));
    // The slice first: a Service whose endpoint pools are not known yet is shown everywhere (fail open).
    await cluster.createEndpointSlice(ns, 'auto-1', { service: 'auto', ports: [{ name: 'http', port: 8080 }], endpoints: endpoints([site1]) });
    await sleep(500);
    const svc = (await cluster.createService(ns, 'auto', {
      type: 'NodePort',
      ports: [{ name: 'http', port: 80, targetPort: 8080 }],
      annotations: { [AUTO_LISTEN]: 'true' },
    })) as KubeObject & { spec: { ports: { nodePort: number }[] } };
    const nodePort = svc.spec.ports[0]!.nodePort;
    const key = `${ns}/auto:http`;
    await kp(site1).waitFor(hasNodePort(key, nodePort), 30_000, `${key} on pool1`);
    await staysAbsent(site2, key, 2_000);

    // Scale to pool1 + pool2 nodes → appears on pool2 (after the auto-listen debounce, 3 s by default).
    let t = performance.now();
    await cluster.createEndpointSlice(ns, 'auto-1', { service: 'auto', ports: [{ name: 'http', port: 8080 }], endpoints: endpoints([site1, site2]) });
    await measure('auto-listen endpoints pool1 → pool1+pool2: appears on pool2', t, {
      site: site2,
      until: (r) => hasNodePort(key, nodePort)(r) && r.services.get(key)?.endpoints.length === 2,
      event: { type: 'ADDED', name: `${ns}/auto` },
    }, [{ site: site1, what: 'pool1 keeps the node port', check: hasNodePort(key, nodePort) }]);

    // Back to pool1 only → disappears from pool2.
    t = performance.now();
    await cluster.createEndpointSlice(ns, 'auto-1', { service: 'auto', ports: [{ name: 'http', port: 8080 }], endpoints: endpoints([site1]) });
    await measure('auto-listen endpoints pool1+pool2 → pool1: gone from pool2', t, { site: site2, until: hasNoService(key), event: { type: 'DELETED', name: `${ns}/auto` } }, [
      { site: site1, what: 'pool1 keeps the node port', check: hasNodePort(key, nodePort) },
    ]);
    expect((await kp(site1).rules()).services.get(key)).toMatchObject({ nodePort, endpoints: ['10.244.2.10:8080'] });

    // An endpoint on pool2 that is not ready does not make pool2 listen.
    await cluster.apply({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'auto-2', namespace: ns, labels: { 'kubernetes.io/service-name': 'auto' } },
      addressType: 'IPv4',
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: [{ addresses: ['10.244.2.99'], nodeName: site2.node, conditions: { ready: false, serving: false, terminating: false } }],
    });
    await staysAbsent(site2, key, 5_000);

    // A per-pool override on pool2's NodePool turns the gate off there, live: auto-listen is then
    // ignored on pool2 (the Service shows as without poolview); removing the override hides it again.
    t = performance.now();
    await cluster.patch('apps.openyurt.io/v1beta2', 'NodePool', pool2, undefined, { metadata: { annotations: { [POOL_GATES]: 'NodePortAutoListen=false' } } });
    await measure('pool2 gate override NodePortAutoListen=false: appears on pool2', t, {
      site: site2,
      until: hasNodePort(key, nodePort),
      event: { type: 'ADDED', name: `${ns}/auto` },
    }, [{ site: site1, what: 'pool1 keeps the node port', check: hasNodePort(key, nodePort) }]);
    t = performance.now();
    await cluster.patch('apps.openyurt.io/v1beta2', 'NodePool', pool2, undefined, { metadata: { annotations: { [POOL_GATES]: null } } });
    await measure('pool2 gate override removed: gone from pool2', t, { site: site2, until: hasNoService(key), event: { type: 'DELETED', name: `${ns}/auto` } }, [
      { site: site1, what: 'pool1 keeps the node port', check: hasNodePort(key, nodePort) },
    ]);
    expectNoRestart();
  });

  it('an upstream type change ClusterIP → NodePort → ClusterIP moves a Service listening on pool1 out of pool2 and back', async () => {
    await cluster.createService(ns, 'flip', { ports: [{ name: 'http', port: 80, targetPort: 8080 }], annotations: { [LISTEN]: pool1 } });
    await cluster.createEndpointSlice(ns, 'flip-1', { service: 'flip', ports: [{ name: 'http', port: 8080 }], endpoints: [{ ip: '10.244.4.1', nodeName: site1.node }] });
    const key = `${ns}/flip:http`;
    // A ClusterIP Service is not nodeportisolation's business: both pools program it.
    for (const site of [site1, site2]) await kp(site).waitFor((r) => r.services.get(key)?.endpoints.length === 1 && !r.services.get(key)?.nodePort, 30_000, `${key} on ${site.node}`);

    let t = performance.now();
    const np = (await cluster.patch('v1', 'Service', 'flip', ns, { spec: { type: 'NodePort' } })) as KubeObject & { spec: { ports: { nodePort: number }[] } };
    const nodePort = np.spec.ports[0]!.nodePort;
    await measure('type ClusterIP → NodePort (listen pool1): gone from pool2', t, { site: site2, until: hasNoService(key), event: { type: 'DELETED', name: `${ns}/flip` } });
    await kp(site1).waitFor(hasNodePort(key, nodePort), 15_000, `${key} node port on pool1`);

    t = performance.now();
    await cluster.patch('v1', 'Service', 'flip', ns, { spec: { type: 'ClusterIP' } });
    await measure('type NodePort → ClusterIP: back on pool2', t, {
      site: site2,
      until: (r) => r.services.get(key)?.endpoints.length === 1 && !r.services.get(key)?.nodePort,
      event: { type: 'ADDED', name: `${ns}/flip` },
    });
    await kp(site1).waitFor((r) => r.services.has(key) && !r.services.get(key)?.nodePort, 15_000, `${key} without node port on pool1`);
    expectNoRestart();
  });

  it('a node moving from pool1 to pool2 (NodePool status + label) loses the pool1-only Service and gains the pool2-only one', async () => {
    const make = async (name: string, listen: string, ip: string): Promise<number> => {
      const svc = (await cluster.createService(ns, name, {
        type: 'NodePort',
        ports: [{ name: 'http', port: 80, targetPort: 8080 }],
        annotations: { [LISTEN]: listen },
      })) as KubeObject & { spec: { ports: { nodePort: number }[] } };
      await cluster.createEndpointSlice(ns, `${name}-1`, { service: name, ports: [{ name: 'http', port: 8080 }], endpoints: [{ ip, nodeName: site2.node }] });
      return svc.spec.ports[0]!.nodePort;
    };
    const only1 = await make('only1', pool1, '10.244.3.1');
    const only2 = await make('only2', pool2, '10.244.3.2');
    const key1 = `${ns}/only1:http`;
    const key2 = `${ns}/only2:http`;
    await kp(site1).waitFor((r) => hasNodePort(key1, only1)(r) && !r.services.has(key2), 30_000, 'pool1 node: only1, not only2');
    await kp(site2).waitFor((r) => hasNodePort(key2, only2)(r) && !r.services.has(key1), 30_000, 'pool2 node: only2, not only1');

    // site1's node joins pool2: leaves pool1's status.nodes, enters pool2's, label follows.
    const t = performance.now();
    await cluster.setNodePoolNodes(pool1, []);
    await cluster.setNodePoolNodes(pool2, [site2.node, site1.node]);
    await cluster.patch('v1', 'Node', site1.node, undefined, { metadata: { labels: { [POOL_LABEL]: pool2 } } });
    await measure('node pool1 → pool2: pool1-only Service gone from (and pool2-only in) the moved node', t, {
      site: site1,
      until: (r) => !r.services.has(key1) && hasNodePort(key2, only2)(r),
      event: { type: 'DELETED', name: `${ns}/only1` },
    }, [{ site: site2, what: 'the pool2 node keeps only2 and never gets only1', check: (r) => hasNodePort(key2, only2)(r) && !r.services.has(key1) }]);
    site1.pool = pool2;
    expectNoRestart();
  });
});
