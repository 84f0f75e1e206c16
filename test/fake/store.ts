// In-memory object store with one global resourceVersion counter (like etcd), bounded event history,
// point-in-time snapshots reconstructed from history, and synchronous change subscriptions.
import { randomUUID } from 'node:crypto';
import { resourceDef, type ResourceDef } from './resources.js';
import { S, StatusError } from './status.js';

/** A stored object: deep-frozen, without kind/apiVersion (as list items are serialized), `metadata` first. */
export type Item = Readonly<Record<string, any>> & { readonly metadata: Readonly<Record<string, any>> };
export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoreEvent {
  rv: number;
  resource: string;
  key: string;
  type: EventType;
  /** ADDED/MODIFIED: the new state. DELETED: the last state, carrying the deletion resourceVersion. */
  obj: Item;
  /** MODIFIED/DELETED: the state before this event. */
  prev?: Item;
}

export type Listener = (ev: StoreEvent) => void;

const jsonCache = new WeakMap<object, string>();
/** JSON of a stored item (cached; items are immutable). */
export function itemJson(item: Item): string {
  let s = jsonCache.get(item);
  if (s === undefined) {
    s = JSON.stringify(item);
    jsonCache.set(item, s);
  }
  return s;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as object)) deepFreeze(v);
  }
  return o;
}

export function keyOf(def: ResourceDef, namespace: string | undefined, name: string): string {
  return def.namespaced ? `${namespace ?? ''}/${name}` : name;
}

function nowTimestamp(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}

function randomSuffix(): string {
  const chars = 'bcdfghjklmnpqrstvwxz2456789';
  let s = '';
  for (let i = 0; i < 5; i++) s += chars[Math.floor(Math.random() * chars.length)];
  return s;
}

/** Canonical JSON (sorted keys) for no-op detection. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return '[' + v.map(canonical).join(',') + ']';
  if (v && typeof v === 'object') {
    const keys = Object.keys(v).sort();
    return '{' + keys.map((k) => JSON.stringify(k) + ':' + canonical((v as any)[k])).join(',') + '}';
  }
  return JSON.stringify(v);
}

export class Store {
  rv = 0;
  /** History at or below this rv is forgotten: reads/watches need rv >= compactedRv. */
  compactedRv = 0;
  private history: StoreEvent[] = [];
  private historyStart = 0;
  private readonly data = new Map<string, Map<string, Item>>();
  private readonly sorted = new Map<string, string[]>();
  private readonly lastRv = new Map<string, number>();
  private readonly listeners = new Map<string, Set<Listener>>();
  private rvWaiters: Array<{ rv: number; wake: () => void }> = [];

  constructor(private readonly historyLimit = 10_000) {}

  private map(resource: string): Map<string, Item> {
    let m = this.data.get(resource);
    if (!m) this.data.set(resource, (m = new Map()));
    return m;
  }

  /** Turn an input object into a frozen stored item: deep copy, drop TypeMeta, metadata first. */
  private normalize(def: ResourceDef, obj: object, meta: Record<string, unknown>): Item {
    const copy = JSON.parse(JSON.stringify(obj ?? {})) as Record<string, any>;
    delete copy.kind;
    delete copy.apiVersion;
    const md: Record<string, any> = { ...(copy.metadata ?? {}), ...meta };
    delete copy.metadata;
    if (!def.namespaced) delete md.namespace;
    for (const k of Object.keys(md)) if (md[k] === undefined) delete md[k];
    return deepFreeze({ metadata: md, ...copy }) as Item;
  }

  get(resource: string, namespace: string | undefined, name: string): Item | undefined {
    const def = resourceDef(resource);
    return this.map(resource).get(keyOf(def, namespace, name));
  }

  /** Create; throws StatusError (AlreadyExists, Invalid). */
  create(resource: string, obj: Record<string, any>, opts: { dryRun?: boolean } = {}): Item {
    const def = resourceDef(resource);
    const md = { ...(obj?.metadata ?? {}) };
    let name: string | undefined = md.name;
    if (!name && md.generateName) name = md.generateName + randomSuffix();
    if (!name) {
      throw new StatusError(S.invalid(def.kind, def.group, '', [{ field: 'metadata.name', type: 'Required value', detail: 'name or generateName is required' }]));
    }
    const namespace = def.namespaced ? md.namespace || 'default' : undefined;
    const key = keyOf(def, namespace, name);
    const m = this.map(resource);
    if (m.has(key)) throw new StatusError(S.alreadyExists(def, name));
    const rv = opts.dryRun ? this.rv : this.rv + 1;
    const item = this.normalize(def, obj, {
      name,
      namespace,
      uid: randomUUID(),
      resourceVersion: String(rv),
      creationTimestamp: md.creationTimestamp ?? nowTimestamp(),
      deletionTimestamp: undefined,
    });
    if (opts.dryRun) return item;
    this.commit({ rv, resource, key, type: 'ADDED', obj: item }, () => m.set(key, item));
    return item;
  }

  /**
   * Replace an existing object. uid and creationTimestamp are kept from the stored object.
   * expectedRv: optimistic-concurrency precondition (409 Conflict when stale).
   * skipNoop: like the apiserver, an update that changes nothing does not bump the rv and emits no event.
   */
  update(resource: string, obj: Record<string, any>, opts: { expectedRv?: string; skipNoop?: boolean; dryRun?: boolean } = {}): Item {
    const def = resourceDef(resource);
    const md = obj?.metadata ?? {};
    const name: string | undefined = md.name;
    if (!name) throw new StatusError(S.invalid(def.kind, def.group, '', [{ field: 'metadata.name', type: 'Required value', detail: 'name is required' }]));
    const namespace = def.namespaced ? md.namespace || 'default' : undefined;
    const key = keyOf(def, namespace, name);
    const m = this.map(resource);
    const old = m.get(key);
    if (!old) throw new StatusError(S.notFound(def, name));
    if (opts.expectedRv && opts.expectedRv !== old.metadata.resourceVersion) throw new StatusError(S.conflict(def, name));
    const keep = { uid: old.metadata.uid, creationTimestamp: old.metadata.creationTimestamp, name, namespace };
    if (opts.skipNoop) {
      const same = this.normalize(def, obj, { ...keep, resourceVersion: old.metadata.resourceVersion });
      if (canonical(same) === canonical(old)) return old;
    }
    const rv = opts.dryRun ? this.rv : this.rv + 1;
    const item = this.normalize(def, obj, { ...keep, resourceVersion: String(rv) });
    if (opts.dryRun) return item;
    this.commit({ rv, resource, key, type: 'MODIFIED', obj: item, prev: old }, () => m.set(key, item));
    return item;
  }

  /** Delete; returns the last state carrying the deletion rv, or undefined when absent. Preconditions → 409. */
  delete(resource: string, namespace: string | undefined, name: string, pre: { uid?: string; resourceVersion?: string } = {}): Item | undefined {
    const def = resourceDef(resource);
    const key = keyOf(def, def.namespaced ? namespace || 'default' : undefined, name);
    const m = this.map(resource);
    const old = m.get(key);
    if (!old) return undefined;
    if (pre.uid && pre.uid !== old.metadata.uid) {
      throw new StatusError(S.conflict(def, name, `the UID in the precondition (${pre.uid}) does not match the UID in record (${old.metadata.uid}). The object might have been modified`));
    }
    if (pre.resourceVersion && pre.resourceVersion !== old.metadata.resourceVersion) {
      throw new StatusError(S.conflict(def, name, `the ResourceVersion in the precondition (${pre.resourceVersion}) does not match the ResourceVersion in record (${old.metadata.resourceVersion}). The object might have been modified`));
    }
    const rv = this.rv + 1;
    const gone = withRv(old, rv);
    this.commit({ rv, resource, key, type: 'DELETED', obj: gone, prev: old }, () => m.delete(key));
    return gone;
  }

  private commit(ev: StoreEvent, apply: () => void): void {
    const isNewKey = ev.type !== 'MODIFIED';
    apply();
    this.rv = ev.rv;
    this.lastRv.set(ev.resource, ev.rv);
    if (isNewKey) this.sorted.delete(ev.resource);
    this.history.push(ev);
    if (this.history.length - this.historyStart > this.historyLimit) this.trimTo(this.history.length - this.historyLimit);
    const ls = this.listeners.get(ev.resource);
    if (ls) {
      for (const l of [...ls]) {
        try {
          l(ev);
        } catch {
          // a listener's failure (e.g. a dead socket) must not break the write
        }
      }
    }
    if (this.rvWaiters.length) {
      const ready = this.rvWaiters.filter((w) => w.rv <= this.rv);
      this.rvWaiters = this.rvWaiters.filter((w) => w.rv > this.rv);
      for (const w of ready) w.wake();
    }
  }

  /** Drop history entries before index i (absolute). */
  private trimTo(i: number): void {
    if (i <= this.historyStart) return;
    this.compactedRv = Math.max(this.compactedRv, this.history[i - 1].rv);
    this.historyStart = i;
    if (this.historyStart > 4096 && this.historyStart * 2 > this.history.length) {
      this.history = this.history.slice(this.historyStart);
      this.historyStart = 0;
    }
  }

  compact(rv: number = this.rv): void {
    if (rv <= this.compactedRv) return;
    this.compactedRv = Math.min(rv, this.rv);
    this.trimTo(this.firstIndexAfter(this.compactedRv));
    this.compactedRv = Math.min(rv, this.rv);
  }

  /** Absolute index of the first retained event with rv > n. */
  private firstIndexAfter(n: number): number {
    let lo = this.historyStart, hi = this.history.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.history[mid].rv <= n) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Events of `resource` with rv > n, oldest first. Caller checks n >= compactedRv. */
  eventsAfter(resource: string, n: number): StoreEvent[] {
    const out: StoreEvent[] = [];
    for (let i = this.firstIndexAfter(n); i < this.history.length; i++) {
      const ev = this.history[i];
      if (ev.resource === resource) out.push(ev);
    }
    return out;
  }

  /** Current objects of a resource (live map; do not mutate). */
  current(resource: string): Map<string, Item> {
    return this.map(resource);
  }

  /** The state of `resource` at rv n (n <= this.rv). Throws StatusError 410 when n is older than retained history. */
  stateAt(resource: string, n: number, expiredMessage: string): Map<string, Item> {
    const m = this.map(resource);
    if (n < this.compactedRv) throw new StatusError(S.expired(expiredMessage));
    if (n >= (this.lastRv.get(resource) ?? 0)) return m;
    const snap = new Map(m);
    for (let i = this.history.length - 1; i >= this.historyStart; i--) {
      const ev = this.history[i];
      if (ev.rv <= n) break;
      if (ev.resource !== resource) continue;
      if (ev.type === 'ADDED') snap.delete(ev.key);
      else snap.set(ev.key, ev.prev!);
    }
    return snap;
  }

  /** Keys of a map in etcd key order. Cached for the live map. */
  sortedKeys(resource: string, m: Map<string, Item>): string[] {
    if (m === this.data.get(resource)) {
      let ks = this.sorted.get(resource);
      if (!ks) this.sorted.set(resource, (ks = [...m.keys()].sort(cmp)));
      return ks;
    }
    return [...m.keys()].sort(cmp);
  }

  subscribe(resource: string, l: Listener): () => void {
    let set = this.listeners.get(resource);
    if (!set) this.listeners.set(resource, (set = new Set()));
    set.add(l);
    return () => set!.delete(l);
  }

  /** Resolves true once this.rv >= rv, false after ms. */
  waitForRv(rv: number, ms: number): Promise<boolean> {
    if (this.rv >= rv) return Promise.resolve(true);
    return new Promise((resolve) => {
      const w = { rv, wake: () => { clearTimeout(t); resolve(true); } };
      const t = setTimeout(() => {
        this.rvWaiters = this.rvWaiters.filter((x) => x !== w);
        resolve(false);
      }, ms);
      this.rvWaiters.push(w);
    });
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A frozen copy of item whose metadata.resourceVersion is rv. */
export function withRv(item: Item, rv: number): Item {
  return Object.freeze({ ...item, metadata: Object.freeze({ ...item.metadata, resourceVersion: String(rv) }) }) as Item;
}
