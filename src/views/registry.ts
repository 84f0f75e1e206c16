// Open views by resource, and what every view needs to know about scope changes: when the last one
// was applied (W at that moment) and which resourceVersions were served after it.
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Revisions } from '../revisions.js';

export interface ReevaluatingView {
  readonly resource: string;
  /** Re-applies the current chain and scope to every object the view knows; returns events sent. */
  reevaluate(cause: string): void;
  close(): void;
}

interface ScopeChange {
  /** Counts the changes applied to the resource, so a view built meanwhile can catch up. */
  generation: number;
  /** W when the change was applied: resuming at or below it needs a re-list, unless the rv is known safe. */
  at: number;
  /** resourceVersions served after the change (list and initial-events-end rvs): safe to resume from. */
  safe: Set<number>;
}

/** Bursts within this window are applied as one change (a pool of 1,000 nodes changing). */
const COALESCE_MS = 5;
const MAX_SAFE = 10_000;

export class ViewRegistry {
  private readonly views = new Map<string, Set<ReevaluatingView>>();
  private readonly changes = new Map<string, ScopeChange>();
  private readonly pending = new Map<string, string>(); // resource -> cause
  private timer: NodeJS.Timeout | undefined;
  readonly metrics: ViewMetrics;

  constructor(
    private readonly revisions: Revisions,
    registry: Registry,
    private readonly log: Logger,
  ) {
    this.metrics = new ViewMetrics(registry, this);
  }

  add(view: ReevaluatingView): void {
    let set = this.views.get(view.resource);
    if (!set) this.views.set(view.resource, (set = new Set()));
    set.add(view);
  }

  remove(view: ReevaluatingView): void {
    this.views.get(view.resource)?.delete(view);
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

  /** A watch may resume from rv without a re-list when no scope change happened at or after it. */
  canResume(resource: string, rv: number): boolean {
    const change = this.changes.get(resource);
    return !change || rv > change.at || change.safe.has(rv);
  }

  markServed(resource: string, rv: number): void {
    const change = this.changes.get(resource);
    if (change && rv >= change.at && change.safe.size < MAX_SAFE) change.safe.add(rv);
  }

  scopeChanged(resources: Iterable<string>, cause: string): void {
    for (const resource of resources) if (!this.pending.has(resource)) this.pending.set(resource, cause);
    this.timer ??= setTimeout(() => this.flush(), COALESCE_MS);
  }

  private flush(): void {
    this.timer = undefined;
    const started = performance.now();
    const at = this.revisions.high;
    for (const [resource, cause] of this.pending) {
      this.changes.set(resource, { generation: this.generation(resource) + 1, at, safe: new Set() });
      for (const view of this.views.get(resource) ?? []) {
        try {
          view.reevaluate(cause);
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
    for (const set of this.views.values()) for (const view of [...set]) view.close();
  }
}

export class ViewMetrics {
  readonly synthesized: Counter<'type' | 'cause'>;
  readonly fanout: Histogram;

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
