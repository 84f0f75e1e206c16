// Issue #16's Show on the real control plane: one poolview, a real kube-proxy (netns) and two
// client-go-style informers (@kubernetes/client-node as coredns and cilium-agent) reading Services
// and EndpointSlices through it during steady churn. A counting TCP relay sits between poolview and
// the apiserver, another between a directly connected JSON client (the same informers, as admin)
// and the apiserver: the bytes the apiserver sends poolview, start included, are compared with what
// the one direct client gets. Every client's final cache must equal its view of the cluster. And a
// token without RBAC gets the apiserver's own 403 through poolview for a cached resource.
import { connect, createServer, type Socket } from 'node:net';
import { CoreV1Api, DiscoveryV1Api, makeInformer, type KubernetesObject } from '@kubernetes/client-node';
import { request, Agent } from 'undici';
import { readFileSync } from 'node:fs';
import { afterAll, expect, it } from 'vitest';
import { createNodeNetns, describeWithKubeProxy, startKubeProxy, type KubeProxy, type NodeNetns } from '../support/kube-proxy.js';
import { startTestPoolview, type TestPoolview } from '../support/poolview.js';
import { sleep } from '../support/processes.js';
import { sharedCluster, uniqueName } from '../support/shared-cluster.js';
import { startCluster, type Cluster } from '../support/cluster.js';
import { kubeConfigAs } from '../support/client-node.js';

const cluster = sharedCluster();
afterAll(() => cluster.close());

/** Seconds of churn (compressed time: one write every CHURN_INTERVAL_MS). */
const CHURN_SECONDS = Number(process.env.POOLVIEW_E2E_CHURN_SECONDS ?? 75);
const CHURN_INTERVAL_MS = 100;

interface Relay {
  url: string;
  /** Bytes the apiserver sent through this relay. */
  fromApiserver(): number;
  /** Cuts every open connection, as a dropped link or a restarting apiserver would. */
  cut(): void;
  close(): Promise<void>;
}

/** A TCP relay in front of the apiserver that counts what the apiserver sends (TLS included, as on the wire). */
async function countingRelay(target: URL): Promise<Relay> {
  let bytes = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    upstream.on('data', (chunk: Buffer) => (bytes += chunk.length));
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `${target.protocol}//127.0.0.1:${port}`,
    fromApiserver: () => bytes,
    cut: () => {
      for (const s of sockets) s.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Compacts etcd up to its current revision (as the apiserver does every 5 minutes). */
async function compactEtcd(): Promise<void> {
  const etcd = cluster.info.etcdServer;
  const head = (await (await fetch(`${etcd}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from('/').toString('base64') }) })).json()) as { header: { revision: string } };
  const res = await fetch(`${etcd}/v3/kv/compaction`, { method: 'POST', body: JSON.stringify({ revision: head.header.revision, physical: true }) });
  expect(res.status).toBe(200);
}


/** Informers on every Service and EndpointSlice of the cluster, as coredns and cilium-agent keep them. */
async function startInformers(server: string, userAgent: string, on = cluster) {
  const kc = kubeConfigAs(on, server, userAgent);
  const core = kc.makeApiClient(CoreV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  const services = makeInformer(kc, '/api/v1/services', () => core.listServiceForAllNamespaces());
  const slices = makeInformer(kc, '/apis/discovery.k8s.io/v1/endpointslices', () => discovery.listEndpointSliceForAllNamespaces());
  const errors: unknown[] = [];
  for (const i of [services, slices]) {
    i.on('error', (err) => {
      errors.push(err);
      // As client-go's reflector: start over after an error.
      setTimeout(() => void i.start().catch(() => {}), 500);
    });
    await i.start();
  }
  return { services, slices, errors, stop: () => Promise.all([services.stop(), slices.stop()]) };
}

/**
 * name → what an informer holds of each object in one namespace: its content (labels, annotations,
 * type and ports, endpoint addresses). Not its resourceVersion: a scope change or a re-list may mark
 * an object with a newer revision than its own (docs/design.md, mechanism (d)).
 */
function held(objects: KubernetesObject[], ns: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const o of objects) {
    if (o.metadata?.namespace !== ns) continue;
    const x = o as KubernetesObject & { spec?: { type?: string; ports?: Array<{ port?: number }> }; endpoints?: Array<{ addresses?: string[] }> };
    out[o.metadata.name!] = JSON.stringify([o.metadata.labels ?? {}, o.metadata.annotations ?? {}, x.spec?.type ?? null, x.spec?.ports?.map((p) => p.port) ?? null, x.endpoints?.map((e) => e.addresses) ?? null]);
  }
  return out;
}

type Informers = Awaited<ReturnType<typeof startInformers>>;

/** Each informer's Services and EndpointSlices in `ns` become the cluster's (30 s at most); returns those. */
async function expectConverged(on: Cluster, informers: Informers[], ns: string) {
  const want = {
    services: held((await on.list('v1', 'Service', { namespace: ns })).items as KubernetesObject[], ns),
    slices: held((await on.list('discovery.k8s.io/v1', 'EndpointSlice', { namespace: ns })).items as KubernetesObject[], ns),
  };
  const deadline = Date.now() + 30_000;
  for (const i of informers) {
    while (JSON.stringify([held(i.services.list(), ns), held(i.slices.list(), ns)]) !== JSON.stringify([want.services, want.slices]) && Date.now() < deadline) await sleep(200);
    expect(held(i.services.list(), ns)).toEqual(want.services);
    expect(held(i.slices.list(), ns)).toEqual(want.slices);
  }
  return want;
}

describeWithKubeProxy()('watch cache through poolview (issue #16)', () => {
  it('one upstream stream per resource for kube-proxy, coredns and cilium-agent: bytes ≤ 1.1× one direct JSON client; every cache converges through an etcd compaction and a cut link', async () => {
    const run = uniqueName('wc');
    const ns = run;
    const node = `${run}-n1`;
    let netns: NodeNetns | undefined;
    let pv: TestPoolview | undefined;
    let kubeProxy: KubeProxy | undefined;
    const relays: Relay[] = [];
    const informers: Informers[] = [];
    try {
      netns = await createNodeNetns();
      await cluster.createNamespace(ns);
      await cluster.createNodePool(`${run}-pool`, { nodes: [node] });
      await cluster.createNode(node, { internalIP: netns.nodeIP, pool: `${run}-pool` });

      // The start state: Services with EndpointSlices of 6 endpoints each.
      let next = 0;
      const live = new Set<number>();
      const endpoints = (i: number, gen: number) =>
        Array.from({ length: 6 }, (_, k) => ({ ip: `10.${100 + (i % 100)}.${gen % 250}.${k + 1}`, nodeName: node }));
      const create = async (i: number) => {
        await cluster.createService(ns, `svc-${i}`, { ports: [{ name: 'http', port: 80, targetPort: 8080 }], labels: { app: `svc-${i}` } });
        await cluster.createEndpointSlice(ns, `svc-${i}-1`, { service: `svc-${i}`, ports: [{ name: 'http', port: 8080 }], endpoints: endpoints(i, 0) });
        live.add(i);
      };
      for (let i = 0; i < 40; i++) await create(next++);

      const apiserver = new URL(cluster.server);
      const toPoolview = await countingRelay(apiserver);
      const toDirect = await countingRelay(apiserver);
      relays.push(toPoolview, toDirect);
      pv = await startTestPoolview(cluster, { nodeName: node, bindAddress: netns.hostIP, server: toPoolview.url, probeIntervalMs: 5_000 });
      kubeProxy = await startKubeProxy({ cluster, nodeName: node, server: pv.httpsUrl, netns, createNode: false });
      informers.push(await startInformers(pv.httpsUrl, 'coredns/1.12.0'));
      informers.push(await startInformers(pv.httpsUrl, 'cilium-agent/1.17.0'));
      const direct = await startInformers(toDirect.url, 'direct-client/1.0');
      informers.push(direct);

      // Churn: creates, updates (endpoints move, labels change) and deletes at a steady rate.
      let gen = 1;
      const ops = { create: 0, update: 0, delete: 0 };
      const churnStart = Date.now();
      const until = churnStart + CHURN_SECONDS * 1000;
      const disruptions = { compacted: false, cut: false };
      for (let step = 0; Date.now() < until; step++) {
        const started = Date.now();
        // A third of the way: etcd compacted; half-way: poolview's link to the apiserver cut (every watch drops).
        if (!disruptions.compacted && started - churnStart > (CHURN_SECONDS * 1000) / 3) {
          await compactEtcd();
          disruptions.compacted = true;
        }
        if (!disruptions.cut && started - churnStart > (CHURN_SECONDS * 1000) / 2) {
          toPoolview.cut();
          disruptions.cut = true;
        }
        const ids = [...live];
        const pick = ids[(step * 7) % ids.length];
        const kind = step % 10;
        if (kind < 2 || ids.length < 20) {
          await create(next++);
          ops.create++;
        } else if (kind < 3 && ids.length > 30) {
          await cluster.delete('discovery.k8s.io/v1', 'EndpointSlice', `svc-${pick}-1`, ns);
          await cluster.delete('v1', 'Service', `svc-${pick}`, ns);
          live.delete(pick);
          ops.delete++;
        } else if (kind < 8) {
          await cluster.createEndpointSlice(ns, `svc-${pick}-1`, { service: `svc-${pick}`, ports: [{ name: 'http', port: 8080 }], endpoints: endpoints(pick, gen++) });
          ops.update++;
        } else {
          await cluster.createService(ns, `svc-${pick}`, { ports: [{ name: 'http', port: 80, targetPort: 8080 }], labels: { app: `svc-${pick}`, gen: String(gen++) } });
          ops.update++;
        }
        await sleep(Math.max(0, CHURN_INTERVAL_MS - (Date.now() - started)));
      }

      // Every cache converges to the cluster: the informers' (unfiltered views) and kube-proxy's rules.
      const want = await expectConverged(cluster, informers, ns);
      const programmed = (r: Awaited<ReturnType<KubeProxy['rules']>>) =>
        [...r.services.keys()].filter((k) => k.startsWith(`${ns}/`)).map((k) => k.slice(ns.length + 1).split(':')[0]).sort();
      const names = Object.keys(want.services).sort();
      await kubeProxy.waitFor((r) => JSON.stringify(programmed(r)) === JSON.stringify(names), 30_000, 'kube-proxy programs every Service');

      // Let the last events and bookmarks land, then read the relays.
      await sleep(1_000);
      const poolviewBytes = toPoolview.fromApiserver();
      const directBytes = toDirect.fromApiserver();
      const ratio = poolviewBytes / directBytes;
      const metrics = (
        await Promise.all(['poolview_cache_upstream_bytes_total', 'poolview_cache_requests_served_total', 'poolview_proxied_bytes_total', 'poolview_requests_total'].map((m) => pv!.registry.getSingleMetricAsString(m)))
      ).join('\n');
      console.log(
        `[cache e2e] ${CHURN_SECONDS}s churn (${JSON.stringify(ops)}): apiserver → poolview ${poolviewBytes} B (kube-proxy, coredns, cilium-agent, scope sources); ` +
          `apiserver → one direct JSON client ${directBytes} B; ratio ${ratio.toFixed(3)}\n${metrics}`,
      );
      expect(informers.flatMap((i) => i.errors)).toEqual([]);
      expect(ratio).toBeLessThanOrEqual(1.1);
    } finally {
      for (const i of informers) await i.stop().catch(() => {});
      await kubeProxy?.stop();
      await pv?.close();
      for (const r of relays) await r.close();
      await netns?.remove();
      await cluster.request('DELETE', `/api/v1/namespaces/${ns}`, { allow: [404] }).catch(() => {});
    }
  });
});

it('a token without the right gets the apiserver\'s own 403 through poolview for a cached resource', async () => {
  const run = uniqueName('wc403');
  const pv = await startTestPoolview(cluster, { nodeName: `${run}-n1` });
  try {
    await cluster.createNamespace(run);
    await cluster.apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'nobody', namespace: run } });
    const { body } = await cluster.request<{ status: { token: string } }>('POST', `/api/v1/namespaces/${run}/serviceaccounts/nobody/token`, {
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 600 } },
    });
    const agent = new Agent({ connect: { ca: readFileSync(cluster.caFile) } });
    const read = async (base: string, path: string, token: string) => {
      const res = await request(base + path, { dispatcher: agent, headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
      return { status: res.statusCode, body: await res.body.json() };
    };
    for (const path of ['/api/v1/services', `/api/v1/namespaces/${run}/services`, '/apis/discovery.k8s.io/v1/endpointslices?watch=true&resourceVersion=0', '/api/v1/namespaces/default/services/kubernetes']) {
      const direct = await read(cluster.server, path, body.status.token);
      expect(direct.status).toBe(403);
      expect(await read(pv.httpsUrl, path, body.status.token)).toEqual(direct);
    }
    // The same requests with a token that may: served (from the cache).
    expect((await read(pv.httpsUrl, '/api/v1/namespaces/default/services/kubernetes?resourceVersion=0', cluster.tokens.admin)).status).toBe(200);
    const served = await pv.registry.getSingleMetricAsString('poolview_cache_requests_served_total');
    expect(served).toMatch(/resource="services",verb="get"} [1-9]/);
    await agent.close();
  } finally {
    await pv.close();
    await cluster.request('DELETE', `/api/v1/namespaces/${run}`, { allow: [404] }).catch(() => {});
  }
});

it('an apiserver restart during churn: the cache resumes or re-lists, and every client converges with no lost or phantom objects', async () => {
  const own = await startCluster({ binDir: cluster.binDir });
  const ns = uniqueName('wcr');
  let pv: TestPoolview | undefined;
  const informers: Informers[] = [];
  try {
    await own.createNamespace(ns);
    pv = await startTestPoolview(own, { nodeName: `${ns}-n1` });
    for (const ua of ['coredns/1.12.0', 'cilium-agent/1.17.0']) informers.push(await startInformers(pv.httpsUrl, ua, own));
    const write = async (i: number, gen: number) => {
      await own.createService(ns, `svc-${i}`, { ports: [{ name: 'http', port: 80 }], labels: { gen: String(gen) } });
      await own.createEndpointSlice(ns, `svc-${i}-1`, { service: `svc-${i}`, ports: [{ name: 'http', port: 8080 }], endpoints: [{ ip: `10.1.${i}.${(gen % 250) + 1}` }] });
    };
    const remove = async (i: number) => {
      await own.delete('discovery.k8s.io/v1', 'EndpointSlice', `svc-${i}-1`, ns);
      await own.delete('v1', 'Service', `svc-${i}`, ns);
    };
    let restarted = false;
    for (let step = 0; step < 150; step++) {
      if (step === 50) {
        await own.restartApiserver();
        restarted = true;
      }
      const i = step % 20;
      // Writes go on around the restart: creates and updates, and every third object deleted once.
      await (step % 3 === 2 && step < 120 ? remove(i) : write(i, step)).catch(() => {});
      await sleep(50);
    }
    expect(restarted).toBe(true);
    const want = await expectConverged(own, informers, ns);
    // And a consistent LIST through poolview after the restart is the apiserver's.
    const through = (await startInformers(pv.httpsUrl, 'late-client/1.0', own));
    informers.push(through);
    expect(held(through.services.list(), ns)).toEqual(want.services);
  } finally {
    for (const i of informers) await i.stop().catch(() => {});
    await pv?.close();
    await own.stop();
  }
});
