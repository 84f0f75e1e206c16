// Unfiltered traffic through poolview looks exactly like the apiserver: kubectl (get, watch, apply),
// @kubernetes/client-node informers, and a real kube-proxy in a network namespace whose iptables
// rules follow Services through poolview — with the streaming-list client and with LIST+WATCH.
import { CoreV1Api, KubeConfig, makeInformer, type V1ConfigMap } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KubeList, KubeObject } from '../support/cluster.js';
import { JsonValueQueue } from '../support/json-stream.js';
import { createNodeNetns, describeWithKubeProxy, startKubeProxy } from '../support/kube-proxy.js';
import { startTestPoolview, type TestPoolview } from '../support/poolview.js';
import { poll } from '../support/processes.js';
import { sharedCluster, uniqueName } from '../support/shared-cluster.js';

const cluster = sharedCluster();
const ns = uniqueName('pt');
const nodeName = uniqueName('pt-node');
const pool = uniqueName('pt-pool');
let pv: TestPoolview;

/** What must be equal between two LIST answers: the objects, field for field, in a stable order. */
function items(list: KubeList): KubeObject[] {
  const key = (o: KubeObject): string => `${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;
  return [...list.items].sort((a, b) => key(a).localeCompare(key(b)));
}

beforeAll(async () => {
  await cluster.createNamespace(ns);
  await cluster.createNodePool(pool, { nodes: [nodeName] });
  await cluster.createNode(nodeName, { internalIP: '10.250.255.254', pool });
  for (const name of ['alpha', 'beta']) {
    await cluster.apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns }, data: { value: name } });
  }
  await cluster.createService(ns, 'web', { ports: [{ name: 'http', port: 80, targetPort: 8080 }] });
  await cluster.createEndpointSlice(ns, 'web-1', {
    service: 'web',
    ports: [{ name: 'http', port: 8080 }],
    endpoints: [{ ip: '10.244.1.5', nodeName }],
  });
  pv = await startTestPoolview(cluster, { nodeName, nodePoolName: pool });
});

afterAll(async () => {
  await pv?.close();
  await cluster.delete('v1', 'Namespace', ns);
  await cluster.delete('v1', 'Node', nodeName);
  await cluster.delete('apps.openyurt.io/v1beta2', 'NodePool', pool);
  await cluster.close();
});

describe('kubectl through poolview', () => {
  it.each([
    ['configmaps', true],
    ['services', true],
    ['endpointslices.discovery.k8s.io', true],
    ['nodes', false],
    ['nodepools.v1beta2.apps.openyurt.io', false],
    ['nodepools.v1beta1.apps.openyurt.io', false],
  ])('get %s -o json sees the same objects as directly', async (resource, namespaced) => {
    const args = ['get', resource, ...(namespaced ? ['-n', ns] : []), '-o', 'json'];
    const direct = items(await cluster.kubectlJson(args));
    const through = items(await cluster.kubectlJson(args, { server: pv.httpsUrl }));
    expect(direct.length).toBeGreaterThan(0);
    // kubectl is targeted by no filter: field for field the apiserver's answer, resourceVersions too.
    expect(through).toEqual(direct);
  });

  it('forwards the client identity, not its own', async () => {
    const who = await cluster.kubectlJson<{ status: { userInfo: { username: string } } }>(['auth', 'whoami', '-o', 'json'], {
      identity: 'kubeProxy',
      server: pv.httpsUrl,
    });
    expect(who.status.userInfo.username).toBe('system:kube-proxy');
    const denied = await cluster.kubectl(['get', 'secrets', '-n', ns], { identity: 'kubeProxy', server: pv.httpsUrl });
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/forbidden/i);
  });

  it('get --watch -o json delivers an update made after it started', async () => {
    const watch = cluster.spawnKubectl(['get', 'configmaps', '-n', ns, '--watch', '--output-watch-events', '-o', 'json'], { server: pv.httpsUrl });
    try {
      type Event = { type: string; object: V1ConfigMap };
      const events = new JsonValueQueue<Event>(watch.stdout!);
      await events.next((e) => e.type === 'ADDED' && e.object.metadata?.name === 'alpha');
      await cluster.apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'alpha', namespace: ns }, data: { value: 'alpha-2' } });
      const modified = await events.next((e) => e.type === 'MODIFIED' && e.object.data?.value === 'alpha-2');
      const stored = await cluster.get('v1', 'ConfigMap', 'alpha', ns);
      expect(modified.object.metadata?.resourceVersion).toBe(stored?.metadata?.resourceVersion);
    } finally {
      watch.kill();
    }
  });

  it('apply (client-side and server-side) works through poolview', async () => {
    const manifest = (value: string): string =>
      JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'applied', namespace: ns }, data: { value } });
    const created = await cluster.kubectl(['apply', '-f', '-'], { server: pv.httpsUrl, input: manifest('one') });
    expect(created.stderr).toBe('');
    expect(created.stdout).toMatch(/configmap\/applied created/);
    expect((await cluster.get<V1ConfigMap & KubeObject>('v1', 'ConfigMap', 'applied', ns))?.data).toEqual({ value: 'one' });

    const updated = await cluster.kubectl(['apply', '-f', '-'], { server: pv.httpsUrl, input: manifest('two') });
    expect(updated.stdout).toMatch(/configmap\/applied configured/);
    expect((await cluster.get<V1ConfigMap & KubeObject>('v1', 'ConfigMap', 'applied', ns))?.data).toEqual({ value: 'two' });

    const serverSide = await cluster.kubectl(['apply', '--server-side', '--force-conflicts', '-f', '-'], { server: pv.httpsUrl, input: manifest('three') });
    expect(serverSide.stdout).toMatch(/configmap\/applied serverside-applied/);
    expect((await cluster.get<V1ConfigMap & KubeObject>('v1', 'ConfigMap', 'applied', ns))?.data).toEqual({ value: 'three' });
  });
});

describe('@kubernetes/client-node informer through poolview', () => {
  it('sees the same objects as directly and gets adds, updates and deletes', async () => {
    const informers = (['direct', 'poolview'] as const).map((via) => {
      const kc = new KubeConfig();
      kc.loadFromFile(cluster.kubeconfig('admin', via === 'poolview' ? pv.httpsUrl : cluster.server));
      const api = kc.makeApiClient(CoreV1Api);
      const informer = makeInformer<V1ConfigMap>(kc, `/api/v1/namespaces/${ns}/configmaps`, () => api.listNamespacedConfigMap({ namespace: ns }));
      const seen: string[] = [];
      informer.on('add', (cm) => seen.push(`add ${cm.metadata?.name}`));
      informer.on('update', (cm) => seen.push(`update ${cm.metadata?.name} ${cm.data?.value}`));
      informer.on('delete', (cm) => seen.push(`delete ${cm.metadata?.name}`));
      informer.on('error', () => {});
      return { via, informer, seen };
    });
    const snapshot = (i: (typeof informers)[number]): [string | undefined, string | undefined, unknown][] =>
      i.informer
        .list()
        .map((cm) => [cm.metadata?.name, cm.metadata?.resourceVersion, cm.data] as [string | undefined, string | undefined, unknown])
        .sort((a, b) => String(a[0]).localeCompare(String(b[0])));
    try {
      await Promise.all(informers.map((i) => i.informer.start()));
      const [direct, through] = informers as [(typeof informers)[0], (typeof informers)[0]];
      await poll('informers list the namespace', () => snapshot(direct).length >= 2 && snapshot(through).length === snapshot(direct).length);
      expect(snapshot(through)).toEqual(snapshot(direct));

      await cluster.apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'informed', namespace: ns }, data: { value: 'v1' } });
      await cluster.apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'informed', namespace: ns }, data: { value: 'v2' } });
      await cluster.delete('v1', 'ConfigMap', 'informed', ns);
      const expected = ['add informed', 'update informed v2', 'delete informed'];
      for (const i of informers) {
        await poll(`${i.via} informer events`, () => expected.every((e) => i.seen.includes(e)), 15_000);
      }
      expect(through.seen.filter((e) => e.includes('informed'))).toEqual(direct.seen.filter((e) => e.includes('informed')));
      await poll('caches agree', () => JSON.stringify(snapshot(through)) === JSON.stringify(snapshot(direct)), 5_000);
    } finally {
      await Promise.all(informers.map((i) => i.informer.stop()));
    }
  });
});

describeWithKubeProxy()('kube-proxy through poolview', () => {
  it.each([
    ['streaming list (WatchListClient default)', true],
    ['LIST + WATCH (WatchListClient=false)', false],
  ])('programs a NodePort Service and removes it when it is deleted — %s', async (_label, watchListClient) => {
    const node = uniqueName('kp');
    const kpPool = uniqueName('kp-pool');
    const kpNs = uniqueName('kp');
    const netns = await createNodeNetns();
    let kpv: TestPoolview | undefined;
    let kubeProxy: Awaited<ReturnType<typeof startKubeProxy>> | undefined;
    try {
      await cluster.createNamespace(kpNs);
      await cluster.createNodePool(kpPool, { nodes: [node] });
      await cluster.createNode(node, { internalIP: netns.nodeIP, pool: kpPool });
      // poolview listens on the host end of the namespace's veth pair, where kube-proxy reaches it.
      kpv = await startTestPoolview(cluster, { nodeName: node, nodePoolName: kpPool, bindAddress: netns.hostIP });
      kubeProxy = await startKubeProxy({ cluster, nodeName: node, server: kpv.httpsUrl, netns, createNode: false, watchListClient });
      expect(kubeProxy.server).toBe(kpv.httpsUrl);

      const svc = (await cluster.createService(kpNs, 'web', {
        type: 'NodePort',
        ports: [{ name: 'http', port: 80, targetPort: 8080 }],
      })) as KubeObject & { spec: { clusterIP: string; ports: { nodePort: number }[] } };
      await cluster.createEndpointSlice(kpNs, 'web-1', {
        service: 'web',
        ports: [{ name: 'http', port: 8080 }],
        endpoints: [{ ip: '10.244.7.7', nodeName: node }],
      });
      const key = `${kpNs}/web:http`;
      const rules = await kubeProxy.waitFor((r) => r.services.get(key)?.endpoints.length === 1, 30_000, `${key} with its endpoint`);
      expect(rules.services.get(key)).toMatchObject({
        clusterIP: svc.spec.clusterIP,
        port: 80,
        protocol: 'TCP',
        nodePort: svc.spec.ports[0]!.nodePort,
        endpoints: ['10.244.7.7:8080'],
        noEndpoints: false,
      });

      await cluster.delete('v1', 'Service', 'web', kpNs);
      await kubeProxy.waitFor((r) => !r.services.has(key), 30_000, `${key} removed`);
      expect(kubeProxy.process.running()).toBe(true); // no restart needed

      // Which client path kube-proxy took, as poolview counted its requests (finished + in flight).
      const kubeProxyCalls = async (verb: string, resource: string): Promise<number> => {
        let sum = 0;
        for (const metric of ['poolview_requests_total', 'poolview_requests_in_flight']) {
          for (const v of (await kpv!.registry.getSingleMetric(metric)!.get()).values) {
            if (v.labels.component === 'kube-proxy' && v.labels.verb === verb && v.labels.resource === resource) sum += v.value;
          }
        }
        return sum;
      };
      expect(await kubeProxyCalls('watch', 'services')).toBeGreaterThan(0);
      expect(await kubeProxyCalls('watch', 'endpointslices')).toBeGreaterThan(0);
      if (watchListClient) expect(await kubeProxyCalls('list', 'services')).toBe(0);
      else expect(await kubeProxyCalls('list', 'services')).toBeGreaterThan(0);
    } finally {
      await kubeProxy?.stop();
      await kpv?.close();
      await netns.remove();
      await cluster.delete('v1', 'Node', node);
      await cluster.delete('apps.openyurt.io/v1beta2', 'NodePool', kpPool);
      await cluster.delete('v1', 'Namespace', kpNs);
    }
  });
});
