// The filter contract: a filter is a named, pure decision over one object given the node's scope.
// No I/O happens inside a filter; everything it needs comes through Scope.

/** A Kubernetes object as decoded from JSON. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

/** Where in-cluster clients on this node reach poolview: its address and HTTPS port. */
export interface ProxyAddress {
  /** An IP address: the dummy interface address (`--enable-dummy-if`), else `--bind-address`. */
  readonly host: string;
  /** `--secure-port`. */
  readonly securePort: number;
}

/** What a filter may know about the node it serves. Kept current by the scope sources. */
export interface Scope {
  /** The node this poolview serves. */
  readonly nodeName: string;
  /** This node's pool (`--nodepool-name` or the Node's `apps.openyurt.io/nodepool` label); undefined = in no pool. */
  readonly nodePool: string | undefined;
  /** Members of a pool (NodePool status.nodes, or node labels where no NodePool CRD is served). */
  poolMembers(pool: string): ReadonlySet<string> | undefined;
  /** The pool a node belongs to, if any. */
  poolOf(nodeName: string): string | undefined;
  /** A Service's type and metadata (annotations, labels) from the proxy's own informer. */
  service(namespace: string, name: string): KubeObject | undefined;
  /** Pools where a Service's ready endpoints run (auto-listen), debounced; undefined = not known yet. */
  endpointPools(namespace: string, serviceName: string): ReadonlySet<string> | undefined;
  /** A feature gate, as set by --feature-gates and per-pool overrides for this node's pool. */
  gate(name: string): boolean;
  /**
   * poolview's own address (masterservice, serviceenvupdater, forwardkubesvctraffic); undefined when
   * clients cannot reach it over HTTPS (no secure port, wildcard bind): those filters change nothing.
   */
  readonly proxyAddress?: ProxyAddress;
  /** Reports an input a filter leaves unchanged against expectations, once per key (logged by the engine). */
  filterWarning?(key: string, message: string): void;
}

/**
 * Returns `obj` itself to keep it unchanged, a transformed copy to change it (never mutate `obj`),
 * or null to drop it from the view.
 */
export type FilterDecision = KubeObject | null;

export interface Filter {
  /** As in yurt-hub and the yurt-hub-cfg ConfigMap keys, e.g. "servicetopology". */
  readonly name: string;
  /** Plural resource names the filter applies to; API group and version are ignored, as in yurt-hub. */
  readonly resources: readonly string[];
  /** Components (User-Agent up to the first '/', lower case) targeted without any ConfigMap entry. */
  readonly defaultComponents: readonly string[];
  apply(obj: KubeObject, scope: Scope): FilterDecision;
}

/** Applies filters in order; a drop ends the chain. */
export function applyChain(filters: readonly Filter[], obj: KubeObject, scope: Scope): FilterDecision {
  let current: KubeObject = obj;
  for (const filter of filters) {
    const next = filter.apply(current, scope);
    if (next === null) return null;
    current = next;
  }
  return current;
}
