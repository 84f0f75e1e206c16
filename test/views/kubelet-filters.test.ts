// The filters of in-cluster clients through the view engine on the fake apiserver: Pods and
// ConfigMaps flow through views like Services and EndpointSlices — LIST/GET/WATCH with field
// selectors, transitions of upstream changes and of targeting changes on open watches.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeApiserver, type FakeApiserver } from '../fake/apiserver.js';
import { startPoolview, type RunningPoolview } from '../../src/app.js';
import { startViews } from '../../src/views/index.js';
import { upstreamFromUrl } from '../../src/upstream.js';
import { get, watch } from './client.js';

const KUBELET = 'kubelet/v1.35.4 (linux/amd64) kubernetes/test';
const KUBE_PROXY = 'kube-proxy/v1.35.4 (linux/amd64) kubernetes/test';
const NS = 'kubelet';
const ADDRESS = { host: '169.254.2.1', securePort: 10268 };
const KUBE_PROXY_CONFIG = 'clientConnection:\n  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf\n  qps: 0';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pod(name: string, host = '10.0.0.1') {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS },
    spec: {
      nodeName: 'n1',
      containers: [{ name: 'app', image: 'busybox', env: [{ name: 'KUBERNETES_SERVICE_HOST', value: host }, { name: 'KUBERNETES_SERVICE_PORT', value: '443' }] }],
    },
  };
}

const envOf = (p: any) => Object.fromEntries(p.spec.containers[0].env.map((e: any) => [e.name, e.value]));
const POOLVIEW_ENV = { KUBERNETES_SERVICE_HOST: '169.254.2.1', KUBERNETES_SERVICE_PORT: '10268' };

describe('kubelet and kube-proxy filters through the view engine', () => {
  let fake: FakeApiserver;
  let proxy: RunningPoolview;
  let leases: NodeJS.Timeout;

  beforeAll(async () => {
    fake = await startFakeApiserver({ bookmarkIntervalMs: 200 });
    fake.create('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' } });
    fake.create('leases', { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'n1', namespace: 'kube-node-lease' } });
    leases = setInterval(() => fake.update('leases', fake.get('leases', 'kube-node-lease', 'n1')!), 100);
    fake.create('services', {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'kubernetes', namespace: 'default' },
      spec: { type: 'ClusterIP', clusterIP: '10.96.0.1', clusterIPs: ['10.96.0.1'], ports: [{ name: 'https', port: 443, targetPort: 6443, protocol: 'TCP' }] },
    });
    fake.create('configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'kube-proxy', namespace: 'kube-system' }, data: { 'config.conf': KUBE_PROXY_CONFIG } });
    fake.create('pods', pod('p1'));
    // No secure port on the fake: poolview's address is given to the view engine directly.
    proxy = await startPoolview(
      { nodeName: 'n1', port: 0, healthPort: 0, logLevel: 'warn' },
      { upstream: upstreamFromUrl(fake.url), startViews: (o) => startViews({ ...o, proxyAddress: ADDRESS }) },
    );
  });
  afterAll(async () => {
    clearInterval(leases);
    await proxy?.close();
    await fake?.close();
  });

  it('kubelet GET and LIST of default/kubernetes: poolview\'s address and secure port; other clients see upstream', async () => {
    const svc = (await get(proxy.url, '/api/v1/namespaces/default/services/kubernetes', KUBELET)).json();
    expect(svc.spec).toMatchObject({ clusterIP: '169.254.2.1', clusterIPs: ['169.254.2.1'], ports: [{ name: 'https', port: 10268, targetPort: 6443 }] });
    const list = (await get(proxy.url, '/api/v1/services?fieldSelector=metadata.name%3Dkubernetes', KUBELET)).json();
    expect(list.items.map((s: any) => s.spec.clusterIP)).toEqual(['169.254.2.1']);
    const direct = (await get(proxy.url, '/api/v1/namespaces/default/services/kubernetes', 'kubectl/v1.35.4')).json();
    expect(direct.spec.clusterIP).toBe('10.96.0.1');
  });

  it('kubelet GET of kube-system/kube-proxy: the kubeconfig line commented out', async () => {
    const cm = (await get(proxy.url, '/api/v1/namespaces/kube-system/configmaps/kube-proxy', KUBELET)).json();
    expect(cm.data['config.conf']).toBe(KUBE_PROXY_CONFIG.replace('kubeconfig:', '#kubeconfig:'));
    const asKubeProxy = (await get(proxy.url, '/api/v1/namespaces/kube-system/configmaps/kube-proxy', KUBE_PROXY)).json();
    expect(asKubeProxy.data['config.conf']).toBe(KUBE_PROXY_CONFIG);
  });

  it('kubelet WATCH of its pods (field selector): ADDED and MODIFIED with poolview\'s env; an upstream update of the env is rewritten again', async () => {
    const rv = String(fake.rv());
    const events = await watch(
      proxy.url,
      `/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&watch=true&resourceVersion=${rv}`,
      KUBELET,
      async () => {
        await sleep(100);
        fake.create('pods', pod('p2'));
        await sleep(100);
        fake.update('pods', pod('p2', '10.0.0.9'));
      },
      (evs) => evs.filter((e) => e.type !== 'BOOKMARK').length >= 2,
    );
    const changes = events.filter((e) => e.type !== 'BOOKMARK');
    expect(changes.map((e) => [e.type, e.object.metadata.name])).toEqual([['ADDED', 'p2'], ['MODIFIED', 'p2']]);
    for (const e of changes) expect(envOf(e.object)).toEqual(POOLVIEW_ENV);
    const list = (await get(proxy.url, '/api/v1/pods?fieldSelector=spec.nodeName%3Dn1', KUBELET)).json();
    expect(list.items.map((p: any) => envOf(p))).toEqual([POOLVIEW_ENV, POOLVIEW_ENV]);
  });

  it('kube-proxy WATCH of Services: a LoadBalancer annotated svc.openyurt.io/discard leaves (DELETED, last version seen) and comes back (ADDED)', async () => {
    const lb = fake.create('services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'lb', namespace: NS }, spec: { type: 'LoadBalancer', ports: [{ port: 80 }] } });
    const rv = String(fake.rv());
    const events = await watch(
      proxy.url,
      `/api/v1/namespaces/${NS}/services?watch=true&resourceVersion=${rv}`,
      KUBE_PROXY,
      async () => {
        await sleep(100);
        fake.update('services', { ...lb, metadata: { ...lb.metadata, annotations: { 'svc.openyurt.io/discard': 'true' } } });
        await sleep(100);
        fake.update('services', { ...lb, metadata: { ...lb.metadata, annotations: { 'svc.openyurt.io/discard': 'false' } } });
      },
      (evs) => evs.filter((e) => e.type !== 'BOOKMARK').length >= 2,
    );
    const changes = events.filter((e) => e.type !== 'BOOKMARK');
    expect(changes.map((e) => e.type)).toEqual(['DELETED', 'ADDED']);
    expect(changes[0].object.metadata.annotations ?? {}).toEqual({});
    expect(changes[1].object.metadata.annotations).toEqual({ 'svc.openyurt.io/discard': 'false' });
  });

  it('a ConfigMap entry targeting an open Pod watch: MODIFIED with poolview\'s env; removing it: back to upstream\'s', async () => {
    const rv = String(fake.rv());
    const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'yurt-hub-cfg', namespace: 'kube-system' }, data: { serviceenvupdater: 'my-agent' } };
    // A list first, so the watch holds the pods at one revision (as a reflector's would).
    const list = (await get(proxy.url, `/api/v1/namespaces/${NS}/pods`, 'my-agent/1.0')).json();
    expect(list.items.map((p: any) => envOf(p).KUBERNETES_SERVICE_HOST).sort()).toEqual(['10.0.0.1', '10.0.0.9']);
    const listed = new Map(list.items.map((p: any) => [p.metadata.name, p.metadata.resourceVersion]));
    const ours = (evs: any[]) => evs.filter((e) => e.type !== 'BOOKMARK' && listed.has(e.object.metadata.name));
    // Pod churn on the node moves the view's upstream past each change, so the transitions go out
    // there as one MODIFIED each (the scope-change rule), not as the quiet stream's fallback.
    let churn = 0;
    const events = await watch(
      proxy.url,
      `/api/v1/namespaces/${NS}/pods?watch=true&resourceVersion=${list.metadata.resourceVersion}`,
      'my-agent/1.0',
      async (seen) => {
        fake.create('configmaps', cm);
        await until(() => (fake.create('pods', pod(`churn-${churn++}`)), ours(seen).length >= 2));
        fake.delete('configmaps', 'kube-system', 'yurt-hub-cfg');
        await until(() => (fake.create('pods', pod(`churn-${churn++}`)), ours(seen).length >= 4));
      },
      (evs) => ours(evs).length >= 4,
    );
    const changes = ours(events);
    expect(changes.slice(0, 2).map((e) => e.type)).toEqual(['MODIFIED', 'MODIFIED']);
    expect(changes.slice(0, 2).map((e) => envOf(e.object))).toEqual([POOLVIEW_ENV, POOLVIEW_ENV]);
    expect(changes.slice(2).map((e) => e.type)).toEqual(['MODIFIED', 'MODIFIED']);
    expect(changes.slice(2).map((e) => envOf(e.object).KUBERNETES_SERVICE_HOST).sort()).toEqual(['10.0.0.1', '10.0.0.9']);
    // Changed content, changed resourceVersion (contract rule 5), never older than the list.
    for (const e of changes.slice(0, 2)) {
      expect(e.object.metadata.resourceVersion).not.toBe(listed.get(e.object.metadata.name));
      expect(Number(e.object.metadata.resourceVersion)).toBeGreaterThanOrEqual(Number(list.metadata.resourceVersion));
    }
  });
});

/** Polls `condition` every 200 ms (each poll may also act), for 10 s at most. */
async function until(condition: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 10_000; !condition(); ) {
    if (Date.now() > deadline) throw new Error('condition not met within 10 s');
    await new Promise((r) => setTimeout(r, 200));
  }
}
