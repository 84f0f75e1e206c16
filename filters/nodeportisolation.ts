// nodeportisolation: a NodePort/LoadBalancer Service is in a node's view only if the node's pool
// listens on it. A Service out of view leaves it entirely (ClusterIP rules included), as in yurt-hub.
//
// `nodeport.openyurt.io/listen` (present, any value): comma list, entries trimmed; `P` enables pool
// P, `-P` disables it, `*` enables every pool. For this node's pool the first entry naming it wins,
// then `*`; otherwise (unlisted pool, empty value) the Service is out of view. Case-sensitive.
//
// `nodeport.openyurt.io/auto-listen: "true"` (gate NodePortAutoListen, only without an explicit
// `listen`): in view iff the Service's ready endpoints run in this node's pool; unknown → in view.
//
// A node in no pool sees every Service.

import {
  ANNOTATION_NODEPORT_AUTO_LISTEN,
  ANNOTATION_NODEPORT_LISTEN,
  GATE_NODEPORT_AUTO_LISTEN,
  annotation,
  isCoreKind,
  specOf,
} from './annotations.js';
import type { Filter, FilterDecision, KubeObject, Scope } from './types.js';

/** Whether `pool` listens according to a `nodeport.openyurt.io/listen` value. */
export function listensIn(listen: string, pool: string): boolean {
  const disable = '-' + pool;
  let star = false;
  for (const raw of listen.split(',')) {
    const entry = raw.trim();
    if (entry === pool) return true;
    if (entry === disable) return false;
    if (entry === '*') star = true;
  }
  return star;
}

function apply(obj: KubeObject, scope: Scope): FilterDecision {
  if (!isCoreKind(obj, 'Service')) return obj;
  const type = specOf(obj)?.type;
  if (type !== 'NodePort' && type !== 'LoadBalancer') return obj;
  const pool = scope.nodePool;
  if (pool === undefined || pool === '') return obj; // orphan node: native behaviour

  const listen = annotation(obj, ANNOTATION_NODEPORT_LISTEN);
  if (listen !== undefined) return listensIn(listen, pool) ? obj : null;

  const autoListen = annotation(obj, ANNOTATION_NODEPORT_AUTO_LISTEN);
  if (autoListen === undefined || autoListen.trim().toLowerCase() !== 'true') return obj;
  if (!scope.gate(GATE_NODEPORT_AUTO_LISTEN)) return obj;
  const namespace = obj.metadata?.namespace;
  const name = obj.metadata?.name;
  if (namespace === undefined || name === undefined) return obj;
  const pools = scope.endpointPools(namespace, name);
  if (pools === undefined) return obj; // not known yet: fail open
  return pools.has(pool) ? obj : null;
}

export const nodePortIsolationFilter: Filter = {
  name: 'nodeportisolation',
  resources: ['services'],
  defaultComponents: ['kube-proxy'],
  apply,
};
