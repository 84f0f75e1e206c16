// The e2e harness itself: identities, RBAC, the NodePool CRD and the object helpers behave as the
// other e2e tests assume.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KubeObject } from '../support/cluster.js';
import { sharedCluster, uniqueName } from '../support/shared-cluster.js';

const cluster = sharedCluster();
const ns = uniqueName('harness');

beforeAll(async () => {
  await cluster.createNamespace(ns);
});

afterAll(async () => {
  await cluster.delete('v1', 'Namespace', ns);
  await cluster.close();
});

describe('e2e control plane', () => {
  it('answers kubectl with the admin identity', async () => {
    const version = await cluster.kubectlJson<{ serverVersion: { gitVersion: string } }>(['version', '-o', 'json']);
    expect(version.serverVersion.gitVersion).toMatch(/^v1\.35\./);
  });

  it('lets each identity do what it needs, and not more', async () => {
    const can = async (identity: 'kubeProxy' | 'poolview', ...args: string[]): Promise<string> =>
      (await cluster.kubectl(['auth', 'can-i', ...args], { identity })).stdout.trim();
    expect(await can('kubeProxy', 'watch', 'endpointslices.discovery.k8s.io')).toBe('yes');
    expect(await can('kubeProxy', 'list', 'services')).toBe('yes');
    expect(await can('kubeProxy', 'create', 'services')).toBe('no');
    expect(await can('poolview', 'watch', 'nodepools.apps.openyurt.io')).toBe('yes');
    expect(await can('poolview', 'list', 'configmaps', '-n', 'kube-system')).toBe('yes');
    expect(await can('poolview', 'get', '/readyz')).toBe('yes');
    expect(await can('poolview', 'list', 'secrets')).toBe('no');
  });

  it('serves NodePools in v1beta2 and v1beta1 with status.nodes', async () => {
    const pool = uniqueName('pool');
    await cluster.createNodePool(pool, { nodes: ['n1', 'n2'] });
    const v1beta1 = await cluster.get<{ status?: { nodes?: string[] } }>('apps.openyurt.io/v1beta1', 'NodePool', pool);
    expect(v1beta1?.status?.nodes).toEqual(['n1', 'n2']);
    const updated = await cluster.setNodePoolNodes(pool, ['n3']);
    expect((updated as { status?: { nodes?: string[] } }).status?.nodes).toEqual(['n3']);
    await cluster.delete('apps.openyurt.io/v1beta2', 'NodePool', pool);
  });

  it('creates Nodes with addresses, Services and EndpointSlices', async () => {
    const node = uniqueName('node');
    await cluster.createNode(node, { internalIP: '10.250.255.2', pool: 'p1' });
    const got = await cluster.get<KubeObject & { status: { addresses: { type: string; address: string }[] } }>('v1', 'Node', node);
    expect(got?.status.addresses).toContainEqual({ type: 'InternalIP', address: '10.250.255.2' });
    expect(got?.metadata?.labels?.['apps.openyurt.io/nodepool']).toBe('p1');

    const svc = await cluster.createService(ns, 'web', { type: 'NodePort', ports: [{ name: 'http', port: 80, targetPort: 8080 }] });
    expect((svc as { spec: { clusterIP: string } }).spec.clusterIP).toMatch(/^10\.96\./);
    await cluster.createEndpointSlice(ns, 'web-1', {
      service: 'web',
      ports: [{ name: 'http', port: 8080 }],
      endpoints: [{ ip: '10.244.1.5', nodeName: node }],
    });
    const slices = await cluster.list('discovery.k8s.io/v1', 'EndpointSlice', { namespace: ns, labelSelector: 'kubernetes.io/service-name=web' });
    expect(slices.items.map((s) => s.metadata?.name)).toEqual(['web-1']);
    await cluster.delete('v1', 'Node', node);
  });
});
