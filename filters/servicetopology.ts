// servicetopology: a node sees only the endpoints of its own node or pool, as chosen by the
// Service's `openyurt.io/topologyKeys` annotation.
//
// Objects: discovery.k8s.io/v1 and v1beta1 EndpointSlices, core/v1 Endpoints. List items come
// without kind/apiVersion, so an object without `kind` is recognised by its shape.
// Fail-open: no Service, no label, unknown annotation value or unknown pool members → unchanged.
// A slice is never dropped, only emptied (kube-proxy must see the empty slice to flush its rules).

import {
  ANNOTATION_TOPOLOGY_KEYS,
  LABEL_SERVICE_NAME,
  TOPOLOGY_HOSTNAME,
  TOPOLOGY_KEY_HOSTNAME,
  TOPOLOGY_NODEPOOL,
  TOPOLOGY_ZONE,
  annotation,
  label,
} from './annotations.js';
import type { Filter, FilterDecision, KubeObject, Scope } from './types.js';

/** Decides whether an endpoint on `node` (undefined = no node) stays in the view. */
type KeepNode = (node: string | undefined) => boolean;

const V1BETA1 = 'discovery.k8s.io/v1beta1';

type Shape = 'endpointslice' | 'endpoints' | undefined;

function shapeOf(obj: KubeObject): Shape {
  const kind = obj.kind;
  const apiVersion = obj.apiVersion;
  if (kind === 'EndpointSlice') {
    if (apiVersion === undefined || apiVersion === '' || apiVersion.startsWith('discovery.k8s.io/')) {
      return 'endpointslice';
    }
    return undefined;
  }
  if (kind === 'Endpoints') {
    return apiVersion === undefined || apiVersion === '' || apiVersion === 'v1' ? 'endpoints' : undefined;
  }
  if (kind !== undefined && kind !== '') return undefined;
  // Items of a list response carry no TypeMeta.
  if (Array.isArray(obj.endpoints) || typeof obj.addressType === 'string') return 'endpointslice';
  if (Array.isArray(obj.subsets)) return 'endpoints';
  return undefined;
}

/** The keep-decision for this node, or undefined when the object stays untouched. */
function keepRule(service: KubeObject, scope: Scope): KeepNode | undefined {
  const keys = annotation(service, ANNOTATION_TOPOLOGY_KEYS);
  if (keys === TOPOLOGY_HOSTNAME) return hostnameRule(scope.nodeName);
  if (keys === TOPOLOGY_NODEPOOL || keys === TOPOLOGY_ZONE) {
    const pool = scope.nodePool;
    // A node in no pool sees what hostname topology would show it.
    if (pool === undefined || pool === '') return hostnameRule(scope.nodeName);
    const members = scope.poolMembers(pool);
    if (members === undefined) return undefined; // membership not known: fail open
    return (node) => node !== undefined && members.has(node);
  }
  return undefined; // absent, empty or any other value (exact match, not a list)
}

function hostnameRule(nodeName: string): KeepNode {
  return (node) => node !== undefined && node === nodeName;
}

function nonEmptyString(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function topologyHostname(endpoint: Record<string, unknown>): string | undefined {
  const topology = endpoint.topology;
  if (topology === null || typeof topology !== 'object') return undefined;
  return nonEmptyString((topology as Record<string, unknown>)[TOPOLOGY_KEY_HOSTNAME]);
}

/** v1: `nodeName`; v1beta1: `topology["kubernetes.io/hostname"]` (v1beta1 may also carry nodeName). */
function sliceEndpointNode(endpoint: unknown, beta: boolean): string | undefined {
  if (endpoint === null || typeof endpoint !== 'object') return undefined;
  const e = endpoint as Record<string, unknown>;
  return beta ? (topologyHostname(e) ?? nonEmptyString(e.nodeName)) : (nonEmptyString(e.nodeName) ?? topologyHostname(e));
}

function addressNode(address: unknown): string | undefined {
  if (address === null || typeof address !== 'object') return undefined;
  return nonEmptyString((address as Record<string, unknown>).nodeName);
}

/** Elements of `list` whose node is kept, or `list` itself when nothing is removed. */
function keepByNode(list: readonly unknown[], nodeOf: (item: unknown) => string | undefined, keep: KeepNode): readonly unknown[] {
  let first = -1;
  for (let i = 0; i < list.length; i++) {
    if (!keep(nodeOf(list[i]))) {
      first = i;
      break;
    }
  }
  if (first < 0) return list;
  const kept = list.slice(0, first);
  for (let i = first + 1; i < list.length; i++) {
    if (keep(nodeOf(list[i]))) kept.push(list[i]);
  }
  return kept;
}

function filterSlice(obj: KubeObject, keep: KeepNode): KubeObject {
  const endpoints = obj.endpoints;
  if (!Array.isArray(endpoints)) return obj; // null/absent: nothing to remove
  const beta = obj.apiVersion === V1BETA1;
  const kept = keepByNode(endpoints, (e) => sliceEndpointNode(e, beta), keep);
  if (kept === endpoints) return obj;
  return { ...obj, metadata: { ...obj.metadata }, endpoints: kept };
}

function filterEndpoints(obj: KubeObject, keep: KeepNode): KubeObject {
  const subsets = obj.subsets;
  if (!Array.isArray(subsets)) return obj;
  let changed = false;
  const next: unknown[] = [];
  for (const subset of subsets) {
    if (subset === null || typeof subset !== 'object') {
      next.push(subset);
      continue;
    }
    const s = subset as Record<string, unknown>;
    const addresses = Array.isArray(s.addresses) ? s.addresses : undefined;
    const notReady = Array.isArray(s.notReadyAddresses) ? s.notReadyAddresses : undefined;
    const keptAddresses = addresses && keepByNode(addresses, addressNode, keep);
    const keptNotReady = notReady && keepByNode(notReady, addressNode, keep);
    if (keptAddresses === addresses && keptNotReady === notReady) {
      next.push(subset);
      continue;
    }
    changed = true;
    if ((keptAddresses?.length ?? 0) === 0 && (keptNotReady?.length ?? 0) === 0) continue; // left empty: removed
    const copy: Record<string, unknown> = { ...s };
    setOrOmit(copy, 'addresses', keptAddresses, addresses);
    setOrOmit(copy, 'notReadyAddresses', keptNotReady, notReady);
    next.push(copy);
  }
  if (!changed) return obj;
  const out: KubeObject = { ...obj, metadata: { ...obj.metadata } };
  if (next.length > 0) out.subsets = next;
  else delete out.subsets; // as the apiserver serialises an Endpoints without subsets
  return out;
}

/** A list emptied by filtering is omitted, as the apiserver omits empty address lists. */
function setOrOmit(target: Record<string, unknown>, key: string, kept: readonly unknown[] | undefined, original: readonly unknown[] | undefined): void {
  if (kept === original) return;
  if (kept === undefined || kept.length === 0) delete target[key];
  else target[key] = kept;
}

/**
 * The nodes an object's endpoints run on, for EndpointSlices and Endpoints (none for anything else):
 * a change of these nodes' pools can change what the filter keeps of it.
 */
export function endpointNodes(obj: KubeObject): string[] {
  const nodes: string[] = [];
  const push = (node: string | undefined) => {
    if (node !== undefined) nodes.push(node);
  };
  const shape = shapeOf(obj);
  if (shape === 'endpointslice' && Array.isArray(obj.endpoints)) {
    const beta = obj.apiVersion === V1BETA1;
    for (const e of obj.endpoints) push(sliceEndpointNode(e, beta));
  } else if (shape === 'endpoints' && Array.isArray(obj.subsets)) {
    for (const subset of obj.subsets as Array<Record<string, unknown> | null>) {
      for (const list of [subset?.addresses, subset?.notReadyAddresses]) if (Array.isArray(list)) for (const a of list) push(addressNode(a));
    }
  }
  return nodes;
}

function apply(obj: KubeObject, scope: Scope): FilterDecision {
  const shape = shapeOf(obj);
  if (shape === undefined) return obj;
  const namespace = obj.metadata?.namespace;
  const serviceName = shape === 'endpointslice' ? label(obj, LABEL_SERVICE_NAME) : obj.metadata?.name;
  if (namespace === undefined || serviceName === undefined || serviceName === '') return obj;
  const service = scope.service(namespace, serviceName);
  if (service === undefined) return obj;
  const keep = keepRule(service, scope);
  if (keep === undefined) return obj;
  return shape === 'endpointslice' ? filterSlice(obj, keep) : filterEndpoints(obj, keep);
}

export const serviceTopologyFilter: Filter = {
  name: 'servicetopology',
  resources: ['endpointslices', 'endpoints'],
  defaultComponents: ['kube-proxy', 'coredns', 'nginx-ingress-controller'],
  apply,
};
