// The scope sources: poolview's own informers (with its own credentials) that keep the inputs of
// the filters' decisions current — this node and its pool, pool members, Services, the endpoint
// pools of Services (auto-listen), the yurt-hub-cfg ConfigMap — and say which filtered resources
// must be re-evaluated when one of them changes.
import type { Logger } from 'pino';
import type { KubeObject, ProxyAddress, Scope } from '../../filters/types.js';
import type { Upstream } from '../types.js';
import { NotServedError, Reflector, keyOnly, metadataOnly, objectKey, type ReflectorHandler } from '../reflector.js';
import { rvNumber, type Revisions } from '../revisions.js';
import type { Targeting } from '../targeting.js';
import { FEATURE_GATES, parseFeatureGates } from '../options.js';

export const NODEPOOL_LABEL = 'apps.openyurt.io/nodepool';
export const TOPOLOGY_ANNOTATION = 'openyurt.io/topologyKeys';
export const AUTO_LISTEN_ANNOTATION = 'nodeport.openyurt.io/auto-listen';
/** Per-pool feature gates, e.g. "NodePortAutoListen=true", on the node's NodePool. */
export const POOL_GATES_ANNOTATION = 'poolview.openyurt.io/feature-gates';

const ENDPOINT_RESOURCES = ['endpointslices', 'endpoints'];
/** Metadata only, with JSON as the fallback of an apiserver that cannot convert. */
const PARTIAL_OBJECT_METADATA = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json';

export interface ScopeSourceOptions {
  upstream: Upstream;
  nodeName: string;
  nodePoolName?: string;
  configMap: { namespace: string; name: string };
  featureGates: Record<string, boolean>;
  targeting: Targeting;
  revisions: Revisions;
  log: Logger;
  /** Debounce for auto-listen endpoint pool changes (a rolling update must not flap the port). */
  autoListenDebounceMs?: number;
  proxyAddress?: ProxyAddress;
}

/**
 * Resources to re-evaluate; a focus narrows it to the objects of these Services ("ns/name") or with
 * endpoints on these nodes. `revision`: the resourceVersion of the write that changed the scope,
 * when one did (a Service, Node, NodePool or ConfigMap event).
 */
type ChangeListener = (resources: ReadonlySet<string>, reason: string, focus?: ChangeFocus, revision?: number) => void;
export interface ChangeFocus {
  services?: ReadonlySet<string>;
  nodes?: ReadonlySet<string>;
}

export class ScopeSources implements Scope {
  readonly nodeName: string;
  private readonly nodeLabelPool = new Map<string, string>(); // node -> apps.openyurt.io/nodepool label
  private poolNodes: Map<string, Set<string>> | undefined; // NodePool status.nodes, when the CRD is served
  private poolGates = new Map<string, Record<string, boolean>>();
  /** Service key -> its EndpointSlices -> nodes of their ready endpoints (auto-listen). */
  private readonly serviceSlices = new Map<string, Map<string, string[]>>();
  /** Node -> pool from NodePool status.nodes, kept with poolNodes. */
  private readonly statusPoolOf = new Map<string, string>();
  private readonly endpointPoolsPublished = new Map<string, ReadonlySet<string>>();
  private readonly endpointPoolsNow = new Set<string>();
  private readonly endpointPoolsLater = new Set<string>();
  private readonly endpointPoolsTimers: { now?: NodeJS.Timeout; later?: NodeJS.Timeout } = {};
  private readonly listeners: ChangeListener[] = [];
  private readonly reflectors: Array<{ name: string; reflector?: Reflector; optional?: boolean; error?: string }> = [];
  private services!: Reflector;
  private readonly warned = new Set<string>();
  private stopped = false;

  private address: ProxyAddress | undefined;

  constructor(private readonly opts: ScopeSourceOptions) {
    this.nodeName = opts.nodeName;
    this.address = opts.proxyAddress;
  }

  // ---- Scope ----

  get nodePool(): string | undefined {
    return this.opts.nodePoolName || this.nodeLabelPool.get(this.nodeName) || this.poolOf(this.nodeName);
  }

  poolOf(node: string): string | undefined {
    return (this.poolNodes && this.statusPoolOf.get(node)) || this.nodeLabelPool.get(node);
  }

  poolMembers(pool: string): ReadonlySet<string> | undefined {
    if (this.poolNodes) return this.poolNodes.get(pool);
    const members = new Set<string>();
    for (const [node, p] of this.nodeLabelPool) if (p === pool) members.add(node);
    return members;
  }

  service(namespace: string, name: string): KubeObject | undefined {
    return this.services?.store.get(`${namespace}/${name}`);
  }

  endpointPools(namespace: string, serviceName: string): ReadonlySet<string> | undefined {
    return this.endpointPoolsPublished.get(`${namespace}/${serviceName}`);
  }

  get proxyAddress(): ProxyAddress | undefined {
    return this.address;
  }

  /** poolview's address is known (a secure port on port 0 is known once it listens): a scope change when it differs. */
  setProxyAddress(address: ProxyAddress | undefined): void {
    if (address?.host === this.address?.host && address?.securePort === this.address?.securePort) return;
    this.address = address;
    this.notify(new Set(this.opts.targeting.resources), 'proxy-address');
  }

  filterWarning(key: string, message: string): void {
    this.warnOnce(key, {}, message);
  }

  gate(name: string): boolean {
    const pool = this.nodePool;
    const override = pool ? this.poolGates.get(pool)?.[name] : undefined;
    return override ?? this.opts.featureGates[name] ?? FEATURE_GATES[name]?.default ?? false;
  }

  // ---- lifecycle ----

  onChange(listener: ChangeListener): void {
    this.listeners.push(listener);
  }

  get synced(): boolean {
    return this.reflectors.every((r) => r.optional || r.reflector?.synced);
  }

  async waitSynced(): Promise<void> {
    while (!this.synced && !this.stopped) await new Promise((r) => setTimeout(r, 20));
  }

  readiness(): Array<{ name: string; ok: boolean; detail?: string }> {
    return this.reflectors.map((r) => ({
      name: `scope-source-${r.name}`,
      ok: Boolean(r.optional || r.reflector?.synced),
      detail: r.error ?? r.reflector?.lastError,
    }));
  }

  start(): void {
    const { configMap } = this.opts;
    this.services = this.watch('services', '/api/v1/services', this.onService, { keep: metadataOnly });
    // Nodes are watched once it is known whether NodePools are served (watchNodePools).
    this.watch('configmap', `/api/v1/namespaces/${configMap.namespace}/configmaps`, this.onConfigMap, {
      query: { fieldSelector: `metadata.name=${configMap.name}` },
    });
    this.watchNodePools();
    if (this.opts.featureGates.NodePortAutoListen !== false) {
      // Endpoint pools are cheap (node names only); watching them lets a per-pool gate turn auto-listen on live.
      this.watch('endpointslices', '/apis/discovery.k8s.io/v1/endpointslices', this.onEndpointSlice, { keep: keyOnly });
    }
  }

  stop(): void {
    this.stopped = true;
    for (const r of this.reflectors) r.reflector?.stop();
    clearTimeout(this.endpointPoolsTimers.now);
    clearTimeout(this.endpointPoolsTimers.later);
  }

  /**
   * What pool decisions need of Nodes, and no more: with NodePools (their status.nodes give pool
   * membership) only this node's Node, for its own pool label; without them every Node, as
   * metadata only (labels), so a node's status updates do not stream every Node to every edge node.
   */
  private watchNodes(nodePoolsServed: boolean): void {
    if (nodePoolsServed) this.watch('nodes', '/api/v1/nodes', this.onNode, { keep: keyOnly, query: { fieldSelector: `metadata.name=${this.nodeName}` } });
    else this.watch('nodes', '/api/v1/nodes', this.onNode, { keep: keyOnly, accept: PARTIAL_OBJECT_METADATA });
  }

  private watch(name: string, path: string, onEvent: ReflectorHandler, extra: { query?: Record<string, string>; keep?: (obj: KubeObject) => KubeObject; accept?: string } = {}): Reflector {
    const reflector = new Reflector({ upstream: this.opts.upstream, path, revisions: this.opts.revisions, log: this.opts.log, onEvent, ...extra });
    const entry: (typeof this.reflectors)[number] = { name, reflector };
    this.reflectors.push(entry);
    void this.keepStarting(entry, reflector);
    return reflector;
  }

  private async keepStarting(entry: { name: string; error?: string }, reflector: Reflector): Promise<void> {
    for (let delay = 500; !this.stopped; delay = Math.min(delay * 2, 30_000)) {
      try {
        await reflector.start();
        entry.error = undefined;
        return;
      } catch (err) {
        entry.error = (err as Error).message;
        this.opts.log.warn({ source: entry.name, err: entry.error }, 'scope source not synced yet; retrying');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** NodePool v1beta2, else v1beta1, else no CRD: members come from the nodes' labels. */
  private watchNodePools(): void {
    const entry: (typeof this.reflectors)[number] = { name: 'nodepools' };
    this.reflectors.push(entry);
    const attempt = async (): Promise<void> => {
      for (let delay = 500; !this.stopped; delay = Math.min(delay * 2, 30_000)) {
        let notServed = 0;
        for (const version of ['v1beta2', 'v1beta1']) {
          const reflector = new Reflector({
            upstream: this.opts.upstream,
            path: `/apis/apps.openyurt.io/${version}/nodepools`,
            revisions: this.opts.revisions,
            log: this.opts.log,
            onEvent: this.onNodePool,
            keep: keyOnly,
          });
          try {
            this.poolNodes = new Map();
            this.statusPoolOf.clear();
            await reflector.start();
            entry.reflector = reflector;
            entry.error = undefined;
            this.watchNodes(true);
            this.opts.log.info({ version }, 'pool members from NodePool status.nodes');
            return;
          } catch (err) {
            this.poolNodes = undefined;
            if (err instanceof NotServedError) notServed++;
            else entry.error = (err as Error).message;
          }
        }
        if (notServed === 2) {
          this.watchNodes(false);
          entry.optional = true;
          this.opts.log.info('no NodePool CRD served: pool members come from node labels');
          this.notify(new Set(['services', ...ENDPOINT_RESOURCES]), 'nodepool-source');
          return;
        }
        await new Promise((r) => setTimeout(r, delay));
      }
    };
    void attempt();
  }

  // ---- change detection ----

  private notify(resources: Set<string>, reason: string, focus?: ChangeFocus, by?: KubeObject): void {
    if (resources.size === 0) return;
    const revision = rvNumber(by?.metadata.resourceVersion) || undefined;
    for (const listener of this.listeners) listener(resources, reason, focus, revision);
  }

  /**
   * Nodes changed pools. Only this node's pool decides what the filters keep (its members, and
   * the listen pools it matches), so other nodes' moves concern only the endpoints on them;
   * auto-listen endpoint pools are recomputed after the usual debounce.
   */
  private poolsChanged(reason: string, moved: ReadonlySet<string> | undefined, by: KubeObject): void {
    if (!moved || moved.has(this.nodeName)) this.notify(new Set(['services', ...ENDPOINT_RESOURCES]), reason, undefined, by);
    else if (moved.size > 0) this.notify(new Set(ENDPOINT_RESOURCES), reason, { nodes: moved }, by);
    this.scheduleAllEndpointPools();
  }

  private readonly onService: ReflectorHandler = (type, obj, old) => {
    const before = old?.metadata.annotations?.[TOPOLOGY_ANNOTATION];
    const after = type === 'deleted' ? undefined : obj.metadata.annotations?.[TOPOLOGY_ANNOTATION];
    if (before !== after) this.notify(new Set(ENDPOINT_RESOURCES), 'service-topology', { services: new Set([objectKey(obj)]) }, obj);
  };

  private readonly onNode: ReflectorHandler = (type, obj) => {
    const name = obj.metadata.name!;
    const before = this.nodeLabelPool.get(name);
    const after = type === 'deleted' ? undefined : obj.metadata.labels?.[NODEPOOL_LABEL];
    if (before === after) return;
    if (after === undefined) this.nodeLabelPool.delete(name);
    else this.nodeLabelPool.set(name, after);
    if (!this.poolNodes || name === this.nodeName) this.poolsChanged('node-pool-label', new Set([name]), obj);
  };

  private readonly onNodePool: ReflectorHandler = (type, obj) => {
    if (!this.poolNodes) return;
    const name = obj.metadata.name!;
    const status = obj.status as { nodes?: string[] } | undefined;
    const nodes = new Set(type === 'deleted' ? [] : (status?.nodes ?? []));
    const before = this.poolNodes.get(name);
    const gatesBefore = JSON.stringify(this.poolGates.get(name) ?? {});
    this.readPoolGates(name, type === 'deleted' ? undefined : obj.metadata.annotations?.[POOL_GATES_ANNOTATION]);
    const gatesChanged = gatesBefore !== JSON.stringify(this.poolGates.get(name) ?? {});
    for (const node of before ?? []) if (this.statusPoolOf.get(node) === name) this.statusPoolOf.delete(node);
    if (type === 'deleted') this.poolNodes.delete(name);
    else this.poolNodes.set(name, nodes);
    for (const node of nodes) this.statusPoolOf.set(node, name);
    const moved = new Set([...nodes].filter((n) => !before?.has(n)));
    for (const node of before ?? []) if (!nodes.has(node)) moved.add(node);
    if (gatesChanged) this.poolsChanged('nodepool-gates', undefined, obj);
    else if (moved.size > 0) this.poolsChanged('nodepool', moved, obj);
  };

  private readPoolGates(pool: string, value: string | undefined): void {
    if (value === undefined) {
      this.poolGates.delete(pool);
      return;
    }
    try {
      this.poolGates.set(pool, parseFeatureGates(value));
    } catch (err) {
      this.warnOnce(`pool-gates/${pool}/${value}`, { pool, err: (err as Error).message }, 'ignoring invalid per-pool feature gates');
    }
  }

  private readonly onConfigMap: ReflectorHandler = (type, obj) => {
    const data = type === 'deleted' ? undefined : ((obj as { data?: Record<string, string> }).data ?? {});
    const version = this.opts.targeting.version;
    const { warnings } = this.opts.targeting.setConfigMap(data);
    for (const warning of warnings) this.warnOnce(warning, { configMap: this.opts.configMap.name }, `ignoring ConfigMap entry: ${warning}`);
    if (this.opts.targeting.version !== version) {
      this.opts.log.info({ configMap: this.opts.configMap.name }, 'filter targeting changed');
      this.notify(new Set(this.opts.targeting.resources), 'configmap', undefined, obj);
    }
  };

  private readonly onEndpointSlice: ReflectorHandler = (type, obj, old) => {
    const key = objectKey(obj);
    const serviceOf = (o: KubeObject | undefined) => {
      const name = o?.metadata.labels?.['kubernetes.io/service-name'];
      return name ? `${o!.metadata.namespace}/${name}` : undefined;
    };
    const before = serviceOf(old);
    const after = type === 'deleted' ? undefined : serviceOf(obj);
    if (before) this.serviceSlices.get(before)?.delete(key);
    if (after) {
      const endpoints = (obj.endpoints as Array<{ nodeName?: string; conditions?: { ready?: boolean } }> | undefined) ?? [];
      const nodes = endpoints.filter((e) => e.nodeName && e.conditions?.ready !== false).map((e) => e.nodeName!);
      let slices = this.serviceSlices.get(after);
      if (!slices) this.serviceSlices.set(after, (slices = new Map()));
      slices.set(key, nodes);
    }
    for (const svc of new Set([before, after])) if (svc) this.scheduleEndpointPools(svc);
  };

  private scheduleAllEndpointPools(): void {
    for (const svc of this.serviceSlices.keys()) this.scheduleEndpointPools(svc);
  }

  /** Endpoint pools are recomputed in batches: at once the first time, later after endpoint churn settles. */
  private scheduleEndpointPools(service: string): void {
    const first = !this.endpointPoolsPublished.has(service);
    (first ? this.endpointPoolsNow : this.endpointPoolsLater).add(service);
    if (first) this.endpointPoolsTimers.now ??= setTimeout(() => this.publishEndpointPools('now'), 0).unref();
    else this.endpointPoolsTimers.later ??= setTimeout(() => this.publishEndpointPools('later'), this.opts.autoListenDebounceMs ?? 3000).unref();
  }

  private publishEndpointPools(which: 'now' | 'later'): void {
    this.endpointPoolsTimers[which] = undefined;
    const due = which === 'now' ? this.endpointPoolsNow : this.endpointPoolsLater;
    const changed = new Set<string>();
    for (const service of due) {
      const pools = new Set<string>();
      for (const nodes of this.serviceSlices.get(service)?.values() ?? []) {
        for (const node of nodes) {
          const pool = this.poolOf(node);
          if (pool) pools.add(pool);
        }
      }
      const before = this.endpointPoolsPublished.get(service);
      if (before && before.size === pools.size && [...pools].every((p) => before.has(p))) continue;
      this.endpointPoolsPublished.set(service, pools);
      if (this.services?.store.get(service)?.metadata.annotations?.[AUTO_LISTEN_ANNOTATION] !== undefined) changed.add(service);
    }
    due.clear();
    if (changed.size > 0) this.notify(new Set(['services']), 'auto-listen', { services: changed });
  }

  private warnOnce(key: string, fields: object, msg: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.opts.log.warn(fields, msg);
  }
}
