// Open views by resource, and what every view needs to know about scope changes: the revision
// from which every client's view of a resource is built with the new scope.
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Revisions } from '../revisions.js';
import type { KubeObject } from '../../filters/types.js';
import type { ChangeFocus } from '../scope/sources.js';
import { SharedObjects, type Affected } from './store.js';

export interface ReevaluatingView {
  readonly resource: string;
  /** Applies the scope changes it has not applied yet: re-decides the objects they concern. */
  catchUp(cause: string): void;
  close(): void;
}

interface ScopeChange {
  /** Counts the changes applied to the resource, so a view built meanwhile can catch up. */
  generation: number;
  /**
   * The change's revision: max(T, D + 1), with T the revision of the write that caused it (else W)
   * and D the highest revision delivered to any client of the resource before it. Everything a
   * client was served with the old scope is older; its transitions and everything served after
   * them are at or past it, so a resourceVersion tells on its own which scope a view was built with.
   */
  at: number;
}

/** Recent filtered lists kept for the watches that follow them. */
const RECENT_LISTS = 8;
const RECENT_LIST_MS = 30_000;
/** Bursts within this window are applied as one change (a pool of 1,000 nodes changing). */
const COALESCE_MS = 5;
/** Recent changes kept per resource, so a view that missed a few re-decides only what they touched. */
const RECENT_CHANGES = 32;


export class ViewRegistry {
  private readonly views = new Map<string, Set<ReevaluatingView>>();
  private readonly changes = new Map<string, ScopeChange>();
  /** Per resource, the highest resourceVersion delivered to a client (D). */
  private readonly deliveredAt = new Map<string, number>();
  private readonly pending = new Map<string, string>(); // resource -> cause
  private readonly recent = new Map<string, Array<{ generation: number; focus?: ChangeFocus }>>();
  private readonly stores = new Map<string, SharedObjects>();
  private readonly lists = new Map<string, { rv: number; items: KubeObject[]; until: number }>();
  /** affectedSince answers until the next change. */
  private readonly affected = new Map<string, Affected>();
  private timer: NodeJS.Timeout | undefined;
  private listSweep: NodeJS.Timeout | undefined;
  readonly metrics: ViewMetrics;

  constructor(
    private readonly revisions: Revisions,
    registry: Registry,
    private readonly log: Logger,
    /** How long a view holds a scope change's transitions for a usable revision (--scope-change-wait). */
    readonly scopeChangeWaitMs = 1000,
  ) {
    this.metrics = new ViewMetrics(registry, this);
  }

  /** A client of `resource` was served (or resumes from) revision rv. */
  delivered(resource: string, rv: number): void {
    if (rv > (this.deliveredAt.get(resource) ?? 0)) this.deliveredAt.set(resource, rv);
  }

  /** A complete filtered list just served: a watch from its resourceVersion seeds from it. */
  rememberList(identity: string, rv: number, items: KubeObject[]): void {
    this.lists.delete(identity);
    this.lists.set(identity, { rv, items, until: Date.now() + RECENT_LIST_MS });
    for (const key of this.lists.keys()) {
      if (this.lists.size <= RECENT_LISTS) break;
      this.lists.delete(key);
    }
    // A list nobody resumed from would otherwise keep its objects until the next list replaced it.
    this.listSweep ??= setTimeout(() => this.sweepLists(), RECENT_LIST_MS).unref();
  }

  private sweepLists(): void {
    this.listSweep = undefined;
    const now = Date.now();
    for (const [key, list] of this.lists) if (list.until <= now) this.lists.delete(key);
    if (this.lists.size > 0) this.listSweep = setTimeout(() => this.sweepLists(), RECENT_LIST_MS).unref();
  }

  /** The objects of a list served at exactly `rv`, if it is recent. */
  recentList(identity: string, rv: number): KubeObject[] | undefined {
    const list = this.lists.get(identity);
    if (!list || list.until < Date.now()) return undefined;
    return list.rv === rv ? list.items : undefined;
  }

  add(view: ReevaluatingView): void {
    let set = this.views.get(view.resource);
    if (!set) this.views.set(view.resource, (set = new Set()));
    set.add(view);
  }

  remove(view: ReevaluatingView): void {
    this.views.get(view.resource)?.delete(view);
  }

  /** The objects the views of a resource share. */
  store(resource: string): SharedObjects {
    let store = this.stores.get(resource);
    if (!store) this.stores.set(resource, (store = new SharedObjects()));
    return store;
  }

  openViews(): number {
    let n = 0;
    for (const set of this.views.values()) n += set.size;
    return n;
  }

  generation(resource: string): number {
    return this.changes.get(resource)?.generation ?? 0;
  }

  changedAt(resource: string): number {
    return this.changes.get(resource)?.at ?? 0;
  }

  /** What the changes after `generation` concern; the same answer for every view that asks. */
  affectedSince(resource: string, generation: number): Affected {
    const id = `${resource}@${generation}`;
    const known = this.affected.get(id);
    if (known) return known;
    const affected = this.computeAffected(resource, generation);
    this.affected.set(id, affected);
    return affected;
  }

  private computeAffected(resource: string, generation: number): Affected {
    const recent = (this.recent.get(resource) ?? []).filter((c) => c.generation > generation);
    if (recent.length === 0 || recent[0].generation !== generation + 1) return 'all';
    const services = new Set<string>();
    const nodes = new Set<string>();
    for (const { focus } of recent) {
      if (!focus || (!focus.services && !focus.nodes)) return 'all';
      for (const svc of focus.services ?? []) services.add(svc);
      for (const node of focus.nodes ?? []) nodes.add(node);
    }
    return { services, nodes };
  }

  /**
   * The revision a change's transitions go out at: past everything delivered with the old scope
   * (D + 1), and the revision T of the write that caused it when that is later — a write of another
   * resource (a Service, Node, NodePool, ConfigMap), so never one of this resource's events, which
   * the transitions must precede. Without such a T, past every revision seen on this resource's
   * streams, which may be events no view delivered yet.
   */
  private changeRevision(resource: string, written: number): number {
    const past = (this.deliveredAt.get(resource) ?? 0) + 1;
    if (written >= past) return written;
    return Math.max(past, this.revisions.highFor(resource) + 1);
  }

  /** A watch may resume from rv without a re-list when its client's view was built after the last scope change. */
  canResume(resource: string, rv: number): boolean {
    return rv >= this.changedAt(resource);
  }

  /**
   * Called as soon as a scope input changed, with the revision of the write that changed it. The
   * change's revision is taken at once, so anything served from now on is marked with it; the open
   * views are re-evaluated together a moment later. `mark: false` re-evaluates without a new
   * revision: for a change no client has seen a view of.
   */
  scopeChanged(resources: Iterable<string>, cause: string, opts: { mark?: boolean; focus?: ChangeFocus; revision?: number } = {}): void {
    this.affected.clear();
    for (const resource of resources) {
      const generation = this.generation(resource) + 1;
      const at = opts.mark === false ? 0 : this.changeRevision(resource, opts.revision ?? 0);
      this.changes.set(resource, { generation, at: Math.max(at, this.changedAt(resource)) });
      let recent = this.recent.get(resource);
      if (!recent) this.recent.set(resource, (recent = []));
      recent.push({ generation, focus: opts.focus });
      if (recent.length > RECENT_CHANGES) recent.shift();
      if (!this.pending.has(resource)) this.pending.set(resource, cause);
    }
    this.timer ??= setTimeout(() => this.flush(), COALESCE_MS);
  }

  private flush(): void {
    this.timer = undefined;
    const started = performance.now();
    for (const [resource, cause] of this.pending) {
      for (const view of this.views.get(resource) ?? []) {
        try {
          view.catchUp(cause);
        } catch (err) {
          this.log.error({ err, resource }, 'view re-evaluation failed; closing the watch so the client re-lists');
          view.close();
        }
      }
    }
    this.pending.clear();
    this.metrics.fanout.observe((performance.now() - started) / 1000);
  }

  closeAll(): void {
    clearTimeout(this.timer);
    clearTimeout(this.listSweep);
    this.lists.clear();
    for (const set of this.views.values()) for (const view of [...set]) view.close();
  }
}

export class ViewMetrics {
  readonly synthesized: Counter<'type' | 'cause'>;
  readonly fanout: Histogram;
  readonly slowClientsCut: Counter<'resource'>;
  readonly fallbacks: Counter<'reason'>;
  readonly held: Histogram;

  constructor(registry: Registry, views: ViewRegistry) {
    this.synthesized = new Counter({
      name: 'poolview_view_events_synthesized_total',
      help: 'Watch events poolview sent that the apiserver did not, by type and cause',
      labelNames: ['type', 'cause'],
      registers: [registry],
    });
    this.fanout = new Histogram({
      name: 'poolview_scope_change_fanout_seconds',
      help: 'Time to re-evaluate every open view affected by a scope change',
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    });
    this.slowClientsCut = new Counter({ name: 'poolview_watch_clients_cut_slow_total', help: 'Filtered watches closed because the client fell 16 MiB behind', labelNames: ['resource'], registers: [registry] });
    this.fallbacks = new Counter({
      name: 'poolview_scope_change_fallbacks_total',
      help: 'Scope-change transitions a view sent at its last delivered resourceVersion (DELETED+ADDED where the client may hold it) instead of at the change\'s revision: timeout = no later upstream event or bookmark within --scope-change-wait, conflict = the next upstream event was at the change\'s revision',
      labelNames: ['reason'],
      registers: [registry],
    });
    this.held = new Histogram({
      name: 'poolview_scope_change_held_seconds',
      help: 'How long a view held a scope change\'s transitions until its upstream passed the change\'s revision (or the wait ran out)',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10],
      registers: [registry],
    });
    new Gauge({
      name: 'poolview_views_open',
      help: 'Filtered watch views open',
      registers: [registry],
      collect() {
        this.set(views.openViews());
      },
    });
  }
}
