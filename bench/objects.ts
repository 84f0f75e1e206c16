// The bench cluster: nodes in pools, NodePort Services with both OpenYurt annotations, and their
// EndpointSlices (6 endpoints each, spread over the pools), shaped as the apiserver stores them.

export const NAMESPACES = 10;
export const POOLS = 10;
export const NODES_PER_POOL = 10;
/** The node poolview serves; it is in pool-0. */
export const NODE_NAME = 'n1';
/** A node outside every pool that hosts one endpoint of a few Services; the scope-change bench moves it in and out of pool-0. */
export const MOVER = 'n-mover';
/** Every MOVER_EVERY-th slice has an endpoint on MOVER (10 slices at 10,000 objects). */
export const MOVER_EVERY = 1000;
export const ENDPOINTS_PER_SLICE = 6;

export type Obj = { metadata: Record<string, any>; [k: string]: any };

export function nodeName(i: number): string {
  return `n${i + 1}`;
}

export function poolNodes(pool: number): string[] {
  return Array.from({ length: NODES_PER_POOL }, (_, j) => nodeName(pool * NODES_PER_POOL + j));
}

export function nodes(): Obj[] {
  const out: Obj[] = [];
  for (let p = 0; p < POOLS; p++) {
    for (const name of poolNodes(p)) {
      out.push({ apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { 'apps.openyurt.io/nodepool': `pool-${p}`, 'kubernetes.io/hostname': name } } });
    }
  }
  out.push({ apiVersion: 'v1', kind: 'Node', metadata: { name: MOVER, labels: { 'kubernetes.io/hostname': MOVER } } });
  return out;
}

export function nodePool(pool: number, extra: string[] = []): Obj {
  return {
    apiVersion: 'apps.openyurt.io/v1beta2',
    kind: 'NodePool',
    metadata: { name: `pool-${pool}` },
    spec: { type: 'Edge' },
    status: { nodes: [...poolNodes(pool), ...extra] },
  };
}

export function namespaceOf(i: number): string {
  return `bench-${i % NAMESPACES}`;
}

export function serviceName(i: number): string {
  return `svc-${String(i).padStart(5, '0')}`;
}

function ip(i: number, base: number): string {
  return `10.${base + ((i >> 16) & 0x3f)}.${(i >> 8) & 0xff}.${i & 0xff}`;
}

/** A NodePort Service listened on by one pool in five (pool-0 is n1's), with topology by node pool. */
export function service(i: number, listen?: string): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: serviceName(i),
      namespace: namespaceOf(i),
      labels: { app: serviceName(i), tier: 'backend' },
      annotations: {
        'openyurt.io/topologyKeys': 'openyurt.io/nodepool',
        'nodeport.openyurt.io/listen': listen ?? `pool-${i % 5}`,
      },
    },
    spec: {
      type: 'NodePort',
      clusterIP: ip(i, 96),
      clusterIPs: [ip(i, 96)],
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      internalTrafficPolicy: 'Cluster',
      externalTrafficPolicy: 'Cluster',
      sessionAffinity: 'None',
      selector: { app: serviceName(i) },
      ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30000 + (i % 2768) }],
    },
    status: { loadBalancer: {} },
  };
}

/** The one EndpointSlice of Service i: 6 endpoints on 6 nodes of different pools (plus MOVER for a few). */
export function endpointSlice(i: number, generation = 0): Obj {
  const name = serviceName(i);
  const endpoints = [];
  for (let j = 0; j < ENDPOINTS_PER_SLICE; j++) {
    const node = j === ENDPOINTS_PER_SLICE - 1 && i % MOVER_EVERY === 0 ? MOVER : nodeName((i * 7 + j * 17) % (POOLS * NODES_PER_POOL));
    const pod = `${name}-${(i * 31 + j).toString(36).padStart(5, 'x')}-${generation}`;
    endpoints.push({
      addresses: [ip(i * ENDPOINTS_PER_SLICE + j, 0)],
      conditions: { ready: true, serving: true, terminating: false },
      nodeName: node,
      targetRef: { kind: 'Pod', namespace: namespaceOf(i), name: pod, uid: `00000000-0000-4000-8000-${(i * 8 + j).toString(16).padStart(12, '0')}` },
      zone: `zone-${j % 3}`,
    });
  }
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `${name}-abcde`,
      namespace: namespaceOf(i),
      generateName: `${name}-`,
      labels: {
        'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
        'kubernetes.io/service-name': name,
        app: name,
      },
      annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': `2026-01-01T00:00:${String(generation % 60).padStart(2, '0')}Z` },
      ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name, uid: `11111111-0000-4000-8000-${i.toString(16).padStart(12, '0')}`, controller: true, blockOwnerDeletion: true }],
    },
    addressType: 'IPv4',
    endpoints,
    ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
  };
}

/** How many of the first n slices have an endpoint on MOVER. */
export function moverSlices(n: number): number {
  return Math.ceil(n / MOVER_EVERY);
}
