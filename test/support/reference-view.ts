// The reference of the randomized model: what a component should hold, written from the rules of
// yurt-hub's filters and poolview's documented extensions (README, docs/reference/yurthub.md §2),
// as plainly as possible and without any of poolview's own code, so a bug in a filter, in targeting
// or in the scope sources fails the model instead of being copied into its expectation.
import type { KubeObject } from '../../filters/types.js';

export interface ReferenceWorld {
  /** The node poolview serves. */
  node: string;
  /** NodePool name → status.nodes (the Node labels follow them). */
  pools: Record<string, string[]>;
  /** Per-pool feature gates (the NodePool's poolview.openyurt.io/feature-gates), overriding `gates`. */
  poolGates?: Record<string, Record<string, boolean>>;
  /** --feature-gates. */
  gates?: Record<string, boolean>;
  services: KubeObject[];
  endpointSlices: KubeObject[];
  /** Services (ns/name) some EndpointSlice of which was ever written: auto-listen pools of the others are unknown, and unknown means in view. */
  slicedServices?: ReadonlySet<string>;
  /** The data of kube-system/yurt-hub-cfg. */
  configMap: Record<string, string>;
}

const DEFAULT_TARGETS: Record<string, string[]> = {
  servicetopology: ['kube-proxy', 'coredns', 'nginx-ingress-controller'],
  nodeportisolation: ['kube-proxy'],
};

/** Whether `filter` applies to `component`: its defaults, plus the ConfigMap keys `<filter>` and `filter_<filter>`. */
export function referenceTargets(filter: string, component: string, configMap: Record<string, string>): boolean {
  const named = [...DEFAULT_TARGETS[filter]];
  for (const key of [filter, `filter_${filter}`]) {
    for (const entry of (configMap[key] ?? '').split(',')) named.push(entry.trim().toLowerCase().split('/')[0].trim());
  }
  return named.includes(component);
}

function poolOfNode(world: ReferenceWorld, node: string): string | undefined {
  return Object.keys(world.pools).find((pool) => world.pools[pool].includes(node));
}

function gate(world: ReferenceWorld, name: string): boolean {
  const pool = poolOfNode(world, world.node);
  const perPool = pool === undefined ? undefined : world.poolGates?.[pool]?.[name];
  return perPool ?? world.gates?.[name] ?? false;
}

/** `nodeport.openyurt.io/listen`: first mention of a pool wins; `P` keeps, `-P` drops, `*` keeps the rest; otherwise dropped. */
function listenKeeps(value: string, pool: string): boolean {
  let star = false;
  for (const raw of value.split(',')) {
    const entry = raw.trim();
    if (entry === pool) return true;
    if (entry === `-${pool}`) return false;
    if (entry === '*') star = true;
  }
  return star;
}

function endpointsReady(slice: KubeObject): Array<{ nodeName?: string }> {
  return ((slice.endpoints as Array<{ nodeName?: string; conditions?: { ready?: boolean } }> | null) ?? []).filter((e) => e.conditions?.ready !== false);
}

/** nodeportisolation: whether the Service stays in this node's view. */
function serviceVisible(world: ReferenceWorld, svc: KubeObject): boolean {
  const type = (svc.spec as { type?: string } | undefined)?.type;
  if (type !== 'NodePort' && type !== 'LoadBalancer') return true;
  const pool = poolOfNode(world, world.node);
  if (pool === undefined) return true;
  const annotations = svc.metadata.annotations ?? {};
  const listen = annotations['nodeport.openyurt.io/listen'];
  if (listen !== undefined) return listenKeeps(listen, pool);
  if (!gate(world, 'NodePortAutoListen') || annotations['nodeport.openyurt.io/auto-listen']?.trim().toLowerCase() !== 'true') return true;
  // Auto-listen: visible on the pools where the Service's ready endpoints run.
  const name = svc.metadata.name;
  if (!world.slicedServices?.has(`${svc.metadata.namespace}/${name}`)) return true;
  return world.endpointSlices.some(
    (s) =>
      s.metadata.namespace === svc.metadata.namespace &&
      s.metadata.labels?.['kubernetes.io/service-name'] === name &&
      endpointsReady(s).some((e) => e.nodeName !== undefined && poolOfNode(world, e.nodeName) === pool),
  );
}

/** servicetopology: the slice with only the endpoints this node may use (never dropped, only emptied). */
function sliceInView(world: ReferenceWorld, slice: KubeObject): KubeObject {
  const serviceName = slice.metadata.labels?.['kubernetes.io/service-name'];
  const svc = world.services.find((s) => s.metadata.namespace === slice.metadata.namespace && s.metadata.name === serviceName);
  const keys = svc?.metadata.annotations?.['openyurt.io/topologyKeys'];
  let keep: ((node: string | undefined) => boolean) | undefined;
  const pool = poolOfNode(world, world.node);
  if (keys === 'kubernetes.io/hostname' || ((keys === 'openyurt.io/nodepool' || keys === 'kubernetes.io/zone') && pool === undefined)) {
    keep = (node) => node === world.node;
  } else if (keys === 'openyurt.io/nodepool' || keys === 'kubernetes.io/zone') {
    const members = world.pools[pool!];
    keep = (node) => node !== undefined && members.includes(node);
  }
  const endpoints = slice.endpoints as Array<{ nodeName?: string }> | null | undefined;
  if (!keep || !Array.isArray(endpoints)) return slice;
  return { ...slice, endpoints: endpoints.filter((e) => keep(e.nodeName)) };
}

/** What `component` should hold of `resource` (services or endpointslices) in `namespace`, by key. */
export function referenceView(world: ReferenceWorld, component: string, resource: 'services' | 'endpointslices', namespace: string): Map<string, KubeObject> {
  const out = new Map<string, KubeObject>();
  if (resource === 'services') {
    const isolate = referenceTargets('nodeportisolation', component, world.configMap);
    for (const svc of world.services) {
      if (svc.metadata.namespace !== namespace) continue;
      if (!isolate || serviceVisible(world, svc)) out.set(`${namespace}/${svc.metadata.name}`, svc);
    }
  } else {
    const topology = referenceTargets('servicetopology', component, world.configMap);
    for (const slice of world.endpointSlices) {
      if (slice.metadata.namespace !== namespace) continue;
      out.set(`${namespace}/${slice.metadata.name}`, topology ? sliceInView(world, slice) : slice);
    }
  }
  return out;
}
