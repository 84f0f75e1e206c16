// Issue 18's Show, on the real control plane: the filters of yurt-hub that make in-cluster clients
// on an edge node go through the node's proxy. With the kubelet's User-Agent, through poolview: the
// `default/kubernetes` Service at poolview's address and secure port, a Pod's
// KUBERNETES_SERVICE_HOST/PORT env rewritten, `kube-system/kube-proxy` without its kubeconfig line
// (GET, LIST and the kubelet's streaming-list WATCHes);
// kube-proxy's read of the `default/kubernetes` EndpointSlice goes to poolview. A real kube-proxy
// (iptables, in a network namespace) reading through poolview programs the kubernetes Service to
// poolview's address and secure port and drops a LoadBalancer annotated svc.openyurt.io/discard —
// also when the annotation comes later, on its open watch. --disabled-filters and
// --working-mode=cloud turn them off.
import { readFileSync } from 'node:fs';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PoolviewOptions } from '../../src/options.js';
import type { KubeObject } from '../support/cluster.js';
import { JsonValueQueue } from '../support/json-stream.js';
import { createNodeNetns, describeWithKubeProxy, startKubeProxy, type KubeProxy, type NodeNetns } from '../support/kube-proxy.js';
import { startTestPoolview, type TestPoolview } from '../support/poolview.js';
import { sharedCluster, uniqueName } from '../support/shared-cluster.js';

const cluster = sharedCluster();
const KUBELET = 'kubelet/v1.35.4 (linux/amd64) kubernetes/e2e';
const KUBE_PROXY = 'kube-proxy/v1.35.4 (linux/amd64) kubernetes/e2e';
/** A loopback address standing in for the dummy interface's (poolview listens there too). */
const DUMMY = '127.0.0.2';
const KUBE_PROXY_CONFIG = ['apiVersion: kubeproxy.config.k8s.io/v1alpha1', 'clientConnection:', '  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf', '  qps: 0', 'mode: iptables'].join('\n');
const DISCARD = 'svc.openyurt.io/discard';

const ns = uniqueName('kubelet');
const node = uniqueName('edge');
const agent = new Agent({ connect: { ca: readFileSync(cluster.caFile) } });
const started: TestPoolview[] = [];

/** A GET through `base` as `userAgent`, with the admin token unless `token` says otherwise (null = none). */
async function read<T = any>(base: string, path: string, userAgent: string, token: string | null = cluster.tokens.admin): Promise<{ status: number; body: T }> {
  const headers: Record<string, string> = { accept: 'application/json', 'user-agent': userAgent };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await request(base + path, { headers, dispatcher: agent });
  return { status: res.statusCode, body: (await res.body.json()) as T };
}

async function poolview(name: string, extra: Partial<PoolviewOptions> = {}, bindAddress?: string): Promise<TestPoolview> {
  const pv = await startTestPoolview(cluster, { nodeName: `${node}-${name}`, bindAddress }, extra);
  started.push(pv);
  return pv;
}

const securePort = (pv: TestPoolview) => Number(new URL(pv.httpsUrl).port);
const envOf = (pod: KubeObject) => Object.fromEntries(((pod.spec as any).containers[0].env as { name: string; value: string }[]).map((e) => [e.name, e.value]));
const httpsPort = (ports: { name: string; port: number }[]) => ports.find((p) => p.name === 'https')!.port;

let upstreamKubernetesIP: string;
let createdKubeProxyConfig = false;
let createdKubernetesSlice = false;

beforeAll(async () => {
  await cluster.createNamespace(ns);
  const env = [{ name: 'KUBERNETES_SERVICE_HOST', value: '10.96.0.1' }, { name: 'KUBERNETES_SERVICE_PORT', value: '443' }, { name: 'OTHER', value: 'x' }];
  // No controller-manager here: the ServiceAccount admission wants the namespace's default account.
  await cluster.apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: ns } });
  await cluster.apply({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'app', namespace: ns },
    spec: { nodeName: node, automountServiceAccountToken: false, containers: [{ name: 'app', image: 'busybox', env }] },
  });
  if (!(await cluster.get('v1', 'ConfigMap', 'kube-proxy', 'kube-system'))) {
    await cluster.apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'kube-proxy', namespace: 'kube-system' }, data: { 'config.conf': KUBE_PROXY_CONFIG } });
    createdKubeProxyConfig = true;
  }
  upstreamKubernetesIP = ((await cluster.get('v1', 'Service', 'kubernetes', 'default'))!.spec as { clusterIP: string }).clusterIP;
  // In a full cluster the kubernetes Service's slice lists the apiservers (kube-controller-manager
  // mirrors it from the apiserver's Endpoints); none is there yet here, so the test writes one as it
  // would look with an apiserver at 192.0.2.10:6443 (a loopback address is not valid in a slice).
  if (!(await cluster.get('discovery.k8s.io/v1', 'EndpointSlice', 'kubernetes', 'default'))) {
    await cluster.createEndpointSlice('default', 'kubernetes', { service: 'kubernetes', ports: [{ name: 'https', port: 6443 }], endpoints: [{ ip: '192.0.2.10' }] });
    createdKubernetesSlice = true;
  }
});

afterAll(async () => {
  for (const pv of started) await pv.close();
  await agent.close();
  if (createdKubeProxyConfig) await cluster.delete('v1', 'ConfigMap', 'kube-proxy', 'kube-system');
  if (createdKubernetesSlice) await cluster.delete('discovery.k8s.io/v1', 'EndpointSlice', 'kubernetes', 'default');
  await cluster.delete('v1', 'Namespace', ns);
  await cluster.close();
});

describe('the kubelet and kube-proxy through poolview (--enable-dummy-if, dummy address 127.0.0.2)', () => {
  let pv: TestPoolview;
  let viaDummy: string;
  beforeAll(async () => {
    pv = await poolview('edge', { enableDummyIf: true, dummyIfIp: DUMMY, anonymousRequests: 'proxy-identity' });
    viaDummy = `https://${DUMMY}:${securePort(pv)}`;
  });

  it('default/kubernetes as the kubelet GETs and LISTs it: poolview\'s address and secure port; kubectl sees upstream\'s', async () => {
    const svc = (await read(viaDummy, '/api/v1/namespaces/default/services/kubernetes', KUBELET)).body;
    expect(svc.spec.clusterIP).toBe(DUMMY);
    expect(svc.spec.clusterIPs).toEqual([DUMMY]);
    expect(httpsPort(svc.spec.ports)).toBe(securePort(pv));
    const list = (await read(pv.httpsUrl, '/api/v1/services', KUBELET)).body;
    expect(list.items.find((s: KubeObject) => s.metadata.name === 'kubernetes' && s.metadata.namespace === 'default').spec.clusterIP).toBe(DUMMY);
    expect(list.items.filter((s: any) => s.spec.clusterIP === DUMMY)).toHaveLength(1);
    const kubectl = (await read(pv.httpsUrl, '/api/v1/namespaces/default/services/kubernetes', 'kubectl/v1.35.4')).body;
    expect(kubectl.spec.clusterIP).toBe(upstreamKubernetesIP);
    expect(httpsPort(kubectl.spec.ports)).toBe(443);
  });

  it('a Pod as the kubelet GETs and LISTs its node\'s pods: KUBERNETES_SERVICE_HOST/PORT are poolview\'s', async () => {
    const want = { KUBERNETES_SERVICE_HOST: DUMMY, KUBERNETES_SERVICE_PORT: String(securePort(pv)), OTHER: 'x' };
    expect(envOf((await read(pv.httpsUrl, `/api/v1/namespaces/${ns}/pods/app`, KUBELET)).body)).toEqual(want);
    const list = (await read(pv.httpsUrl, `/api/v1/pods?fieldSelector=spec.nodeName%3D${node}`, KUBELET)).body;
    expect(list.items.map((p: KubeObject) => envOf(p))).toEqual([want]);
    expect(envOf((await read(pv.httpsUrl, `/api/v1/namespaces/${ns}/pods/app`, 'kubectl/v1.35.4')).body).KUBERNETES_SERVICE_HOST).toBe('10.96.0.1');
  });

  it('kube-system/kube-proxy as the kubelet reads it: the kubeconfig line commented out', async () => {
    const config = (await read(pv.httpsUrl, '/api/v1/namespaces/kube-system/configmaps/kube-proxy', KUBELET)).body.data['config.conf'] as string;
    const upstream = ((await cluster.get('v1', 'ConfigMap', 'kube-proxy', 'kube-system'))!.data as Record<string, string>)['config.conf'];
    expect(upstream).toMatch(/^\s*kubeconfig:/m);
    expect(config).toBe(upstream.replace(/^(\s*)kubeconfig:/m, '$1#kubeconfig:'));
  });

  it('default/kubernetes EndpointSlice as kube-proxy LISTs it (its own token): one ready endpoint at poolview', async () => {
    const list = (await read(pv.httpsUrl, '/apis/discovery.k8s.io/v1/endpointslices', KUBE_PROXY, cluster.tokens.kubeProxy)).body;
    const slice = list.items.find((s: KubeObject) => s.metadata.namespace === 'default' && s.metadata.name === 'kubernetes');
    expect(slice.endpoints).toEqual([{ addresses: [DUMMY], conditions: { ready: true } }]);
    expect(httpsPort(slice.ports)).toBe(securePort(pv));
  });

  it('WATCHes as the kubelet opens them: a new Pod arrives ADDED with poolview\'s env, a kube-proxy ConfigMap update MODIFIED with its kubeconfig line commented out', async () => {
    const headers = { authorization: `Bearer ${cluster.tokens.admin}`, 'user-agent': KUBELET, accept: 'application/json' };
    const open = async (path: string) => {
      const controller = new AbortController();
      const res = await request(`${pv.httpsUrl}${path}`, { headers, dispatcher: agent, signal: controller.signal });
      expect(res.statusCode).toBe(200);
      res.body.on('error', () => {});
      return { events: new JsonValueQueue<{ type: string; object: KubeObject }>(res.body), close: () => controller.abort() };
    };
    const pods = await open(`/api/v1/pods?fieldSelector=spec.nodeName%3D${node}&watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true`);
    const configMaps = await open('/api/v1/namespaces/kube-system/configmaps?fieldSelector=metadata.name%3Dkube-proxy&watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true');
    try {
      await pods.events.next((e) => e.type === 'BOOKMARK');
      await configMaps.events.next((e) => e.type === 'BOOKMARK');
      const env = [{ name: 'KUBERNETES_SERVICE_HOST', value: '10.96.0.1' }, { name: 'KUBERNETES_SERVICE_PORT', value: '443' }];
      await cluster.apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'watched', namespace: ns }, spec: { nodeName: node, automountServiceAccountToken: false, containers: [{ name: 'app', image: 'busybox', env }] } });
      const added = await pods.events.next((e) => e.type === 'ADDED' && e.object.metadata.name === 'watched');
      expect(envOf(added.object)).toEqual({ KUBERNETES_SERVICE_HOST: DUMMY, KUBERNETES_SERVICE_PORT: String(securePort(pv)) });
      await cluster.patch('v1', 'ConfigMap', 'kube-proxy', 'kube-system', { data: { 'config.conf': `${KUBE_PROXY_CONFIG}\n# touched` } });
      const modified = await configMaps.events.next((e) => e.type === 'MODIFIED' && ((e.object as any).data['config.conf'] as string).includes('# touched'));
      expect((modified.object as any).data['config.conf']).toContain('  #kubeconfig: /var/lib/kube-proxy/kubeconfig.conf');
    } finally {
      pods.close();
      configMaps.close();
    }
  });

  it('the dummy address serves the secure port, but never lends poolview\'s identity (the bind address does)', async () => {
    expect((await read(pv.httpsUrl, '/api/v1/namespaces/default/services/kubernetes', 'curl/8', null)).status).toBe(200);
    // Forwarded as it came: the apiserver's anonymous user (401 where anonymous auth is off).
    expect([401, 403]).toContain((await read(viaDummy, '/api/v1/namespaces/default/services/kubernetes', 'curl/8', null)).status);
  });
});

describe('--disabled-filters and --working-mode=cloud turn them off', () => {
  it('disabled masterservice and inclusterconfig: those objects as upstream, the Pod still rewritten', async () => {
    const pv = await poolview('disabled', { disabledFilters: ['masterservice', 'inclusterconfig'] });
    expect((await read(pv.httpsUrl, '/api/v1/namespaces/default/services/kubernetes', KUBELET)).body.spec.clusterIP).toBe(upstreamKubernetesIP);
    const config = (await read(pv.httpsUrl, '/api/v1/namespaces/kube-system/configmaps/kube-proxy', KUBELET)).body.data['config.conf'];
    expect(config).not.toContain('#kubeconfig');
    expect(envOf((await read(pv.httpsUrl, `/api/v1/namespaces/${ns}/pods/app`, KUBELET)).body).KUBERNETES_SERVICE_HOST).toBe('127.0.0.1');
  });

  it('cloud: Pod and kube-proxy\'s slice as upstream, masterservice still on; * turns every filter off', async () => {
    const cloud = await poolview('cloud', { workingMode: 'cloud' });
    expect(envOf((await read(cloud.httpsUrl, `/api/v1/namespaces/${ns}/pods/app`, KUBELET)).body).KUBERNETES_SERVICE_HOST).toBe('10.96.0.1');
    const slice = (await read(cloud.httpsUrl, '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes', KUBE_PROXY)).body;
    const upstream = (await cluster.get('discovery.k8s.io/v1', 'EndpointSlice', 'kubernetes', 'default'))!;
    expect({ endpoints: slice.endpoints, ports: slice.ports }).toEqual({ endpoints: upstream.endpoints, ports: upstream.ports });
    expect((await read(cloud.httpsUrl, '/api/v1/namespaces/default/services/kubernetes', KUBELET)).body.spec.clusterIP).toBe('127.0.0.1');

    const none = await poolview('none', { disabledFilters: ['*'] });
    expect((await read(none.httpsUrl, '/api/v1/namespaces/default/services/kubernetes', KUBELET)).body.spec.clusterIP).toBe(upstreamKubernetesIP);
    expect(envOf((await read(none.httpsUrl, `/api/v1/namespaces/${ns}/pods/app`, KUBELET)).body).KUBERNETES_SERVICE_HOST).toBe('10.96.0.1');
  });
});

describeWithKubeProxy()('a real kube-proxy through poolview', () => {
  let netns: NodeNetns;
  let pv: TestPoolview;
  let kp: KubeProxy;
  const kpNode = uniqueName('edge-kp');
  beforeAll(async () => {
    netns = await createNodeNetns();
    await cluster.createNode(kpNode, { internalIP: netns.nodeIP });
    // Without --enable-dummy-if, poolview's address is its bind address: here the namespace's host side.
    pv = await startTestPoolview(cluster, { nodeName: kpNode, bindAddress: netns.hostIP });
    started.push(pv);
    await cluster.createService(ns, 'cloud-lb', { type: 'LoadBalancer', ports: [{ name: 'http', port: 80 }], annotations: { [DISCARD]: 'true' } });
    await cluster.createService(ns, 'edge-lb', { type: 'LoadBalancer', ports: [{ name: 'http', port: 80 }] });
    kp = await startKubeProxy({ cluster, nodeName: kpNode, server: pv.httpsUrl, netns, createNode: false });
  });
  afterAll(async () => {
    await kp?.stop();
    await netns?.remove();
    await cluster.delete('v1', 'Node', kpNode);
  });

  it('programs default/kubernetes to poolview\'s address and secure port, and never the discarded LoadBalancer', async () => {
    const rules = await kp.waitFor((r) => r.services.get('default/kubernetes:https')?.endpoints.length === 1 && r.services.has(`${ns}/edge-lb:http`), 30_000, 'kubernetes Service and edge-lb');
    expect(rules.services.get('default/kubernetes:https')).toMatchObject({ clusterIP: upstreamKubernetesIP, port: 443, endpoints: [`${netns.hostIP}:${securePort(pv)}`] });
    expect(rules.services.has(`${ns}/cloud-lb:http`)).toBe(false);
  });

  it('annotating a LoadBalancer svc.openyurt.io/discard later removes it from the open watch\'s rules; removing the annotation brings it back', async () => {
    const key = `${ns}/edge-lb:http`;
    await cluster.patch('v1', 'Service', 'edge-lb', ns, { metadata: { annotations: { [DISCARD]: 'true' } } });
    await kp.waitFor((r) => !r.services.has(key), 30_000, 'edge-lb gone');
    await cluster.patch('v1', 'Service', 'edge-lb', ns, { metadata: { annotations: { [DISCARD]: null } } });
    const rules = await kp.waitFor((r) => r.services.has(key), 30_000, 'edge-lb back');
    expect(rules.services.get('default/kubernetes:https')!.endpoints).toEqual([`${netns.hostIP}:${securePort(pv)}`]);
    expect(kp.process.running()).toBe(true);
  });
});
