// The objects of one cached resource and a bounded history of their changes: enough to serve LISTs
// at the current revision or Exact ones inside the window, and watches from any revision in it.
// Each object version is decoded once, upstream, and kept as its JSON text (served as is) plus the
// few fields selectors read.
import type { SelectableObject } from './selectors.js';

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

/** One version of one object. `json` is the object without kind/apiVersion, as list items are written. */
export interface CachedObject extends SelectableObject {
  key: string;
  rv: number;
  json: string;
}

export interface CacheEvent {
  type: EventType;
  rv: number;
  object: CachedObject;
  /** The version before a MODIFIED or DELETED: selector transitions and rolling back for Exact reads. */
  prev?: CachedObject;
}

export interface StoreListener {
  /** Events in revision order (a re-list's differences come as one batch). */
  onEvents(events: readonly CacheEvent[]): void;
  /** The store is exact at a later revision with no change (an upstream bookmark, a freshness probe). */
  onProgress?(rv: number): void;
}

type Metadata = { name?: string; namespace?: string; labels?: Record<string, string>; resourceVersion?: string };

type FieldReaders = Readonly<Record<string, (obj: { spec?: Record<string, unknown> }) => string>>;

/** The cached form of a decoded object (kind and apiVersion dropped: the store knows them). */
export function cachedObject(obj: { kind?: unknown; apiVersion?: unknown; metadata?: Metadata; spec?: Record<string, unknown> }, readers: FieldReaders = {}): CachedObject {
  const { kind: _k, apiVersion: _a, ...rest } = obj;
  const meta = obj.metadata ?? {};
  const namespace = meta.namespace ?? '';
  const name = meta.name ?? '';
  const names = Object.keys(readers);
  const fields = names.length === 0 ? undefined : Object.fromEntries(names.map((f) => [f, readers[f](obj)]));
  return { key: namespace ? `${namespace}/${name}` : name, name, namespace, labels: meta.labels, fields, rv: Number(meta.resourceVersion) || 0, json: JSON.stringify(rest) };
}

/** The same object at another resourceVersion (a DELETED carries the version the client saw at the change's revision). */
export function atRevision(obj: CachedObject, rv: number): CachedObject {
  if (obj.rv === rv) return obj;
  const decoded = JSON.parse(obj.json) as { metadata: Metadata };
  decoded.metadata.resourceVersion = String(rv);
  return { ...obj, rv, json: JSON.stringify(decoded) };
}

/** Thrown by snapshotAt when the revision is outside the window. */
export class TooOldError extends Error {
  constructor(readonly oldest: number) {
    super(`too old resource version (oldest kept ${oldest})`);
  }
}

export class WatchCacheStore {
  readonly objects = new Map<string, CachedObject>();
  /** The revision the store is exact at. */
  rv = 0;
  /** Every change after this revision is in `history`. */
  oldest = 0;
  private history: CacheEvent[] = [];
  private sortedKeys: string[] | undefined;
  private readonly listeners = new Set<StoreListener>();
  private waiters: Array<{ rv: number; wake: () => void }> = [];

  constructor(private readonly window: number) {}

  get historySize(): number {
    return this.history.length;
  }

  subscribe(listener: StoreListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** One change seen on the upstream watch. */
  apply(type: EventType, object: CachedObject): void {
    const prev = this.objects.get(object.key);
    // A version the store already has (a re-list raced the watch) is no change.
    if (prev && prev.rv >= object.rv) return;
    if (type === 'DELETED') {
      if (!prev) return this.advance(object.rv); // nothing a watcher holds changed: progress
      this.objects.delete(object.key);
      this.sortedKeys = undefined;
    } else {
      if (!prev) this.sortedKeys = undefined;
      this.objects.set(object.key, object);
    }
    const event: CacheEvent = { type: type === 'DELETED' ? 'DELETED' : prev ? 'MODIFIED' : 'ADDED', rv: object.rv, object, prev };
    this.history.push(event);
    if (this.history.length > this.window) {
      // Drop in batches: a shift per event would copy the whole array each time.
      const cut = Math.max(1, Math.floor(this.window / 10));
      this.oldest = this.history[cut - 1].rv;
      this.history = this.history.slice(cut);
    }
    this.emit([event]);
    this.moveTo(object.rv);
  }

  /**
   * A complete LIST at `rv` replaces the state. The differences go to open watches as events
   * (DELETED, at `rv`, for what vanished meanwhile); the history before `rv` is dropped, so a
   * watch resuming from before it gets 410 Expired and re-lists.
   */
  replace(items: CachedObject[], rv: number): void {
    const events: CacheEvent[] = [];
    const seen = new Set<string>();
    for (const object of items) {
      seen.add(object.key);
      const prev = this.objects.get(object.key);
      if (prev && prev.rv === object.rv) continue;
      this.objects.set(object.key, object);
      // Open watches may have seen revisions past this version's: it reaches them at the list's
      // revision (a real one, never going backwards), as a scope change's marks do.
      const sent = object.rv > this.rv ? object : atRevision(object, rv);
      events.push({ type: prev ? 'MODIFIED' : 'ADDED', rv: sent.rv, object: sent, prev });
    }
    for (const [key, prev] of this.objects) {
      if (seen.has(key)) continue;
      this.objects.delete(key);
      events.push({ type: 'DELETED', rv, object: atRevision(prev, rv), prev });
    }
    this.sortedKeys = undefined;
    this.history = [];
    this.oldest = rv;
    this.rv = Math.max(this.rv, rv);
    if (events.length > 0) this.emit(events.sort((a, b) => a.rv - b.rv));
    this.wakeWaiters();
  }

  /** A bookmark or a quiet probe: nothing changed up to `rv`. */
  advance(rv: number): void {
    if (this.moveTo(rv)) for (const listener of this.listeners) listener.onProgress?.(rv);
  }

  /** The store's revision moves on (an event, or progress); false when it was there already. */
  private moveTo(rv: number): boolean {
    if (rv <= this.rv) return false;
    this.rv = rv;
    this.wakeWaiters();
    return true;
  }

  /** Resolves true once the store is at `rv` or later, false after `ms`. */
  waitFor(rv: number, ms: number): Promise<boolean> {
    if (this.rv >= rv) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(false);
      }, ms);
      const waiter = { rv, wake: () => (clearTimeout(timer), resolve(true)) };
      this.waiters.push(waiter);
    });
  }

  /** The changes after `rv`, in order; TooOldError when the window does not reach back that far. */
  eventsAfter(rv: number): CacheEvent[] {
    if (rv < this.oldest) throw new TooOldError(this.oldest);
    let lo = 0;
    let hi = this.history.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.history[mid].rv <= rv) lo = mid + 1;
      else hi = mid;
    }
    return this.history.slice(lo);
  }

  /** The objects at the current revision, in key order (as etcd lists them). */
  current(): CachedObject[] {
    this.sortedKeys ??= [...this.objects.keys()].sort();
    return this.sortedKeys.map((k) => this.objects.get(k)!);
  }

  /** The objects exactly at `rv` (inside the window), in key order, rebuilt from the history. */
  snapshotAt(rv: number): CachedObject[] {
    if (rv >= this.rv) return this.current();
    const undo = this.eventsAfter(rv);
    if (undo.length === 0) return this.current();
    const state = new Map(this.objects);
    for (let i = undo.length - 1; i >= 0; i--) {
      const { type, object, prev } = undo[i];
      if (type === 'ADDED') state.delete(object.key);
      else state.set(object.key, prev!);
    }
    return [...state.keys()].sort().map((k) => state.get(k)!);
  }

  private emit(events: readonly CacheEvent[]): void {
    for (const listener of this.listeners) listener.onEvents(events);
  }

  private wakeWaiters(): void {
    if (this.waiters.length === 0) return;
    const ready = this.waiters.filter((w) => w.rv <= this.rv);
    this.waiters = this.waiters.filter((w) => w.rv > this.rv);
    for (const w of ready) w.wake();
  }
}
