// The objects the open views of one resource hold, shared between the views: one decoded copy per
// object version, one filter decision per (version, filter chain, scope generation), and the
// Service and nodes of every object, so that a scope change re-decides only what it concerns.
import { endpointNodes } from '../../filters/servicetopology.js';
import { applyChain, type Filter, type FilterDecision, type KubeObject, type Scope } from '../../filters/types.js';
import { objectKey } from '../reflector.js';
import { rvNumber } from '../revisions.js';
import { withResourceVersion } from './objects.js';

/** What a scope change concerns: the objects of these Services ("namespace/name") or with endpoints on these nodes, or all. */
export type Affected = 'all' | { services: ReadonlySet<string>; nodes: ReadonlySet<string> };

/** The Service an object belongs to ("namespace/name"): itself, or an EndpointSlice's label. */
export function serviceOf(obj: KubeObject): string {
  const name = obj.kind === 'EndpointSlice' ? obj.metadata.labels?.['kubernetes.io/service-name'] : obj.metadata.name;
  return `${obj.metadata.namespace}/${name}`;
}

interface Decision {
  generation: number;
  chain: readonly Filter[];
  out: FilterDecision;
}

export class SharedObjects {
  /** Latest version per apiVersion and key: views of v1 and v1beta1 slices hold different shapes. */
  private readonly latest = new Map<string, KubeObject>();
  /** Key -> the Service it belongs to and the nodes of its endpoints (this version and the one before). */
  private readonly indexed = new Map<string, { service: string; nodes: string[] }>();
  private readonly decisions = new WeakMap<KubeObject, Decision>();
  private readonly keysFor = new WeakMap<object, { version: number; keys: Set<string> }>();
  /** Counts index changes, so a kept keysOf answer is known to be current. */
  private indexVersion = 0;
  /** An object at the revision of a transition: views that send it at the same revision share it. */
  private readonly copies = new WeakMap<KubeObject, KubeObject>();
  /** Serialized objects of the current turn of the event loop: a scope change sends the same ones to every view. */
  private readonly serialized = new Map<KubeObject, string>();

  /**
   * The shared copy of this object version (the first one seen), else `obj`, now indexed. Every
   * version a view holds passes here, so the index is a superset of what any view holds.
   */
  intern(obj: KubeObject, key = objectKey(obj), rvNum = rvNumber(obj.metadata.resourceVersion)): KubeObject {
    const id = `${obj.apiVersion}|${key}`;
    const known = this.latest.get(id);
    const rv = obj.metadata.resourceVersion;
    if (known && known.metadata.resourceVersion === rv) return known;
    const newest = !known || rvNum > rvNumber(known.metadata.resourceVersion);
    if (newest) this.latest.set(id, obj);
    // Indexed under the nodes of this version and of the one before it, which views lagging behind
    // may still hold; an older version that turns up late adds its nodes.
    this.index(obj, key, newest ? known : undefined);
    return obj;
  }

  /** The object is gone upstream. */
  forget(obj: KubeObject, key = objectKey(obj)): void {
    this.latest.delete(`${obj.apiVersion}|${key}`);
    const entry = this.indexed.get(key);
    if (!entry) return;
    this.indexVersion++;
    this.indexed.delete(key);
  }

  /**
   * Keys of the objects a scope change concerns; every view asks, so the answer is kept with the
   * question. One pass over the index per change: cheaper than keeping per-Service and per-node
   * sets current on every watch event.
   */
  keysOf(affected: Exclude<Affected, 'all'>): ReadonlySet<string> {
    const known = this.keysFor.get(affected);
    if (known?.version === this.indexVersion) return known.keys;
    const keys = new Set<string>();
    this.keysFor.set(affected, { version: this.indexVersion, keys });
    const { services, nodes } = affected;
    for (const [key, entry] of this.indexed) {
      if (services.has(entry.service) || (nodes.size > 0 && entry.nodes.some((node) => nodes.has(node)))) keys.add(key);
    }
    return keys;
  }

  /** The chain's decision for `obj`; views of the same component share it while the scope is unchanged. */
  decide(chain: readonly Filter[], obj: KubeObject, scope: Scope, generation: number): FilterDecision {
    if (chain.length === 0) return obj;
    const cached = this.decisions.get(obj);
    if (cached && cached.generation === generation && sameChain(cached.chain, chain)) return cached.out;
    const out = applyChain(chain, obj, scope);
    this.decisions.set(obj, { generation, chain, out });
    return out;
  }

  /** `obj` with resourceVersion `rv`, shared between views. */
  atRevision(obj: KubeObject, rv: string): KubeObject {
    if (obj.metadata.resourceVersion === rv) return obj;
    const copy = this.copies.get(obj);
    if (copy?.metadata.resourceVersion === rv) return copy;
    const next = withResourceVersion(obj, rv);
    this.copies.set(obj, next);
    return next;
  }

  /** `obj` marked no older than the scope change at `changedAt` (docs/design.md rule 5), shared between views. */
  notOlderThan(obj: KubeObject, changedAt: number): KubeObject {
    return changedAt > rvNumber(obj.metadata.resourceVersion) ? this.atRevision(obj, String(changedAt)) : obj;
  }

  /** JSON.stringify(obj), once per turn however many views send it. */
  json(obj: KubeObject): string {
    let json = this.serialized.get(obj);
    if (json === undefined) {
      if (this.serialized.size === 0) setImmediate(() => this.serialized.clear());
      this.serialized.set(obj, (json = JSON.stringify(obj)));
    }
    return json;
  }

  private users = 0;

  /** A view starts holding objects of the resource. */
  retain(): void {
    this.users++;
  }

  /** A view is done; with none left, nothing is held. */
  release(): void {
    if (--this.users === 0) this.clear();
  }

  private clear(): void {
    this.indexVersion++;
    this.latest.clear();
    this.indexed.clear();
  }

  private index(obj: KubeObject, key: string, previous: KubeObject | undefined): void {
    let entry = this.indexed.get(key);
    if (!entry) {
      entry = { service: serviceOf(obj), nodes: [] };
      this.indexed.set(key, entry);
      this.indexVersion++;
    }
    // A few nodes per object: an array is far smaller than a Set, times every object.
    const nodes = union(endpointNodes(obj), previous ? endpointNodes(previous) : entry.nodes);
    // Most updates keep their endpoints on the same nodes: nothing to re-index.
    if (nodes.length === entry.nodes.length && nodes.every((node) => entry.nodes.includes(node))) return;
    this.indexVersion++;
    entry.nodes = nodes;
  }
}

function sameChain(a: readonly Filter[], b: readonly Filter[]): boolean {
  return a === b || (a.length === b.length && a.every((f, i) => f === b[i]));
}

/** The distinct names of both lists (a few each). */
function union(a: string[], b: string[]): string[] {
  const out: string[] = [];
  for (const list of [a, b]) for (const name of list) if (!out.includes(name)) out.push(name);
  return out;
}
