// A filtered WATCH: one view per client connection. It keeps, for every object the upstream stream
// told it about, the latest upstream version and what the client holds, so that it can send exactly
// the transitions of the view contract (docs/design.md) — for upstream events and for scope changes alike.
import type { ServerResponse } from 'node:http';
import type { KubeObject } from '../../filters/types.js';
import { statusObject } from '../status.js';
import type { InterceptContext } from '../types.js';
import { jsonLineBatches } from '../json-lines.js';
import { objectKey } from '../reflector.js';
import { rvNumber } from '../revisions.js';
import { drained, expired, getUpstream, negotiate, readAll, relay, seedSlots, sendJson, sendJsonText, upstreamHeaders, UPSTREAM_BODY_DEADLINE_MS, type UpstreamResponse } from './http.js';
import { sameContent, toMetadata } from './objects.js';
import { awaitRevision, listIdentity, wellFormedVersionQuery, type ViewDeps, type ViewSubject } from './list.js';
import type { ReevaluatingView } from './registry.js';
import type { Affected, SharedObjects } from './store.js';

const INITIAL_EVENTS_END = 'k8s.io/initial-events-end';
/** The head of an apiserver watch event line: its type, then (first in metadata) the resourceVersion. */
const EVENT_TYPE = /^\{"type":"([A-Z]+)"/;
const RESOURCE_VERSION = /"resourceVersion":"(\d+)"/;
/** A client this far behind is cut off; it re-watches from its last resourceVersion. */
const MAX_BUFFERED_BYTES = 16 * 1024 * 1024;

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
interface WatchEvent {
  type: EventType;
  object: KubeObject;
}
interface Entry {
  /** Latest version from upstream, as typed by the stream. */
  obj: KubeObject;
  /** What the client holds (the version it was sent), if anything. */
  held?: KubeObject;
  /** False when the content is known but not the resourceVersion (learnt on resume, not sent by this view). */
  exact?: boolean;
}

export class WatchView implements ReevaluatingView {
  readonly resource: string;
  private readonly entries = new Map<string, Entry>();
  /** The last resourceVersion this view delivered: synthesized events carry it (docs/design.md rule 4). */
  private hwm = 0;
  /** Until the initial-events-end bookmark of a streaming list, the client is still building its list. */
  private initial: boolean;
  private closed = false;
  private readonly abort = new AbortController();
  /** The scope changes of this resource this view has applied (see ViewRegistry.generation). */
  private generation: number;
  private readonly store: SharedObjects;
  /**
   * A component no filter ever targeted gets the upstream stream as it is, unparsed; only the hwm
   * is kept. If a filter comes to target it, the view learns what the client holds (the upstream
   * state at hwm) and sends the transitions, as for any scope change.
   */
  private raw: boolean;
  /** While a raw stream becomes a view, the next upstream line waits. */
  converting: Promise<void> | undefined;
  /** Whether the client's state is that of one revision (hwm): not while it gets a watch's initial ADDED events. */
  private holdsOneRevision = false;
  /** Lines of a re-evaluation, written together. */
  private batch: string[] | undefined;
  /**
   * Scope-change transitions held until upstream passes the change's revision (see holdTransitions):
   * the objects they concern, since when, why.
   */
  private due: { keys: Set<string>; since: number; cause: string; timer?: NodeJS.Timeout } | undefined;

  constructor(
    private readonly ctx: InterceptContext,
    private readonly subject: ViewSubject,
    private readonly deps: ViewDeps,
    private readonly opts: { metadataOnly: boolean; streaming: boolean },
  ) {
    this.resource = ctx.info.resource;
    this.initial = opts.streaming;
    this.generation = deps.registry.generation(this.resource);
    this.store = deps.registry.store(this.resource);
    this.store.retain();
    this.raw = subject.chain().length === 0 && !subject.marked() && !opts.metadataOnly;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Handles the upstream lines from `from` on, written together. Returns where it stopped: the end,
   * the index of a line that must wait for the view to be built (`converting`), or -1 when the
   * stream must end.
   */
  onLines(lines: string[], from: number): number {
    return this.batched(() => {
      for (let i = from; i < lines.length; i++) {
        // Nothing newer than a scope change may reach the client before the change's transitions:
        // its resourceVersion would let it resume as if it had them.
        this.catchUp();
        if (this.converting) return i;
        if (!this.onLine(lines[i])) return -1;
      }
      return lines.length;
    });
  }

  /** Handles one upstream line; returns false when the stream must end. */
  private onLine(line: string): boolean {
    const type = this.raw ? EVENT_TYPE.exec(line)?.[1] : undefined;
    if (!type) return this.onUpstream(JSON.parse(line) as WatchEvent, line);
    const rv = rvNumber(RESOURCE_VERSION.exec(line)?.[1]);
    this.deps.revisions.observe(rv, this.resource);
    this.write(line);
    if (type === 'ERROR') return false;
    if (type === 'BOOKMARK' && this.initial && line.includes(`"${INITIAL_EVENTS_END}":"true"`)) {
      this.initial = false;
      this.holdsOneRevision = true;
    }
    this.advance(rv);
    return true;
  }

  get highestSeen(): number {
    return this.deps.revisions.high;
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** The scope-change mark for served objects (docs/design.md mechanism (d)); untargeted components always saw upstream content. */
  private changedAt(): number {
    // Capped at W: the change's own revision may not exist upstream yet.
    return this.subject.marked() ? Math.min(this.deps.registry.changedAt(this.resource), this.deps.revisions.high) : 0;
  }

  private decide(obj: KubeObject): KubeObject | null {
    return this.store.decide(this.subject.chain(), obj, this.deps.scope, this.deps.registry.generation(this.resource));
  }

  get isRaw(): boolean {
    return this.raw;
  }

  /** A raw watch resumed at rv: its client holds the upstream state at rv. */
  resumeRaw(rv: number): void {
    this.advance(rv);
    this.holdsOneRevision = true;
  }

  /** A watch resumed at rv: what the client holds is the view of the state at rv. */
  seed(items: KubeObject[], rv: number): void {
    // The client got these from a list or stream served after the last scope change, bumped alike.
    const changedAt = this.changedAt();
    for (const item of items) {
      const obj = this.store.intern(item);
      const out = this.decide(obj);
      this.entries.set(objectKey(obj), { obj, held: out ? this.store.notOlderThan(out, changedAt) : undefined, exact: false });
    }
    this.advance(rv);
  }

  /** Handles one upstream event (onLines has applied the scope changes first); returns false when the stream must end. */
  private onUpstream(event: WatchEvent, line: string): boolean {
    // The event's resourceVersion and key are read once and carried along.
    const rv = event.object?.metadata?.resourceVersion;
    const rvNum = rvNumber(rv);
    this.deps.revisions.observe(rvNum, this.resource);
    if (event.type === 'ERROR') {
      this.write(line);
      return false;
    }
    if (event.type === 'BOOKMARK') {
      this.beforeUpstream(rvNum, true);
      if (this.initial && event.object.metadata.annotations?.[INITIAL_EVENTS_END] === 'true') {
        this.initial = false;
      }
      this.advance(rvNum);
      this.write(line);
      return true;
    }
    const key = objectKey(event.object);
    this.beforeUpstream(rvNum, false, key);
    const entry = this.entries.get(key);
    if (event.type === 'DELETED') {
      this.entries.delete(key);
      this.store.forget(event.object, key);
      if (entry?.held) this.send('DELETED', this.store.atRevision(entry.held, rv!));
      else if (!entry && !this.subject.transitions() && this.decide(event.object)) this.write(line);
      this.advance(rvNum);
      return true;
    }
    const obj = this.store.intern(event.object, key, rvNum);
    const out = this.decide(obj);
    const next: Entry = { obj };
    if (out) {
      const type = entry?.held ? 'MODIFIED' : 'ADDED';
      next.held = this.initial ? this.store.notOlderThan(out, this.changedAt()) : out;
      if (next.held === obj && type === event.type && !this.opts.metadataOnly) this.write(line);
      else this.send(type, next.held);
    } else if (entry?.held && this.subject.transitions()) {
      // docs/design.md rule 3: the last version the client saw, at the change's resourceVersion.
      this.send('DELETED', this.store.atRevision(entry.held, rv!));
    }
    this.entries.set(key, next);
    this.advance(rvNum);
    return true;
  }

  /** Applies scope changes not yet applied to this view. */
  catchUp(cause = 'scope'): void {
    if (this.generation === this.deps.registry.generation(this.resource)) return;
    if (this.raw) {
      if (!this.subject.marked()) this.generation = this.deps.registry.generation(this.resource);
      else
        this.converting ??= this.becomeView(cause).catch((err: Error) => {
          this.ctx.log.warn({ resource: this.resource, err: err.message }, 'watch could not become a filtered view; it re-lists');
          this.expire();
        });
      return;
    }
    this.reevaluate(cause, this.deps.registry.affectedSince(this.resource, this.generation));
  }

  /** A raw stream's component is targeted now: what its client holds is the upstream state at hwm. */
  private async becomeView(cause: string): Promise<void> {
    // Still receiving a watch's initial events: the client re-lists, as any view's would.
    if (!this.holdsOneRevision) return this.expire();
    const items = await listAt(this.ctx, this.deps, this.hwm, this.signal);
    if (this.closed) return;
    if (items instanceof UpstreamStatus) throw items;
    for (const item of items) {
      const obj = this.store.intern(item);
      this.entries.set(objectKey(obj), { obj, held: obj, exact: true });
    }
    this.raw = false;
    this.converting = undefined;
    this.reevaluate(cause);
  }

  reevaluate(cause: string, affected: Affected = 'all'): void {
    this.generation = this.deps.registry.generation(this.resource);
    if (this.closed || !this.subject.transitions()) return;
    if (this.initial) {
      // The client is still building its list from events marked with the old scope's revision;
      // a fresh streaming list is simpler than patching it (client-go retries on Expired).
      return this.expire();
    }
    const keys = this.due?.keys ?? new Set<string>();
    for (const [key, entry] of this.affectedEntries(affected)) if (this.transitionDue(entry)) keys.add(key);
    if (keys.size === 0 || this.due) return;
    this.holdTransitions(keys, cause);
  }

  /**
   * The transitions of a scope change go out at the change's revision C (ViewRegistry.changedAt):
   * a real revision, newer than anything the client holds, from which a resumed watch is seeded
   * with the new scope. They may go out only once this view has delivered every upstream event up
   * to C, which the next upstream event past C (or a bookmark at C or past it) tells; they go out
   * just before it. Held longer than --scope-change-wait, they go out at the last delivered
   * resourceVersion instead, as DELETED+ADDED where the client may already hold it (a fallback).
   */
  private holdTransitions(keys: Set<string>, cause: string): void {
    this.due = { keys, since: performance.now(), cause };
    const wait = this.deps.registry.scopeChangeWaitMs;
    if (wait <= 0) return this.sendDue('timeout', this.hwm);
    this.due.timer = setTimeout(() => this.sendDue('timeout', this.hwm), wait).unref();
  }

  /** Before an upstream event or bookmark at rv (of `key`): the held transitions go out if rv allows. */
  private beforeUpstream(rv: number, bookmark: boolean, key?: string): void {
    if (!this.due) return;
    const at = this.deps.registry.changedAt(this.resource);
    if (rv > at || (bookmark && rv >= at)) this.sendDue('revision', at);
    // The change's own revision is this event's: the transitions cannot come before it at C.
    else if (rv === at) this.sendDue('conflict', rv - 1);
    // An earlier event decides its object anew and sends it at its own revision.
    else if (key) this.due.keys.delete(key);
  }

  /**
   * Sends the held transitions, the last one at `at`. A client cut off in the middle of them must
   * not resume from `at` as if it had them all: the ones before go out at `at - 1` when `at` is the
   * change's revision (a resume from there is answered 410 and re-lists), else at `at` too.
   */
  private sendDue(outcome: 'revision' | 'timeout' | 'conflict', at: number): void {
    const due = this.due;
    if (!due || this.closed) return;
    this.due = undefined;
    clearTimeout(due.timer);
    const metrics = this.deps.registry.metrics;
    metrics.held.observe((performance.now() - due.since) / 1000);
    if (outcome !== 'revision') {
      metrics.fallbacks.inc({ reason: outcome });
      this.ctx.log.debug({ resource: this.resource, component: this.ctx.component, reason: outcome, at }, 'scope change sent at the last delivered resourceVersion');
    }
    const counts = { ADDED: 0, MODIFIED: 0, DELETED: 0 };
    const count = (type: keyof typeof counts) => counts[type]++;
    const prefix = outcome === 'revision' ? Math.max(at - 1, this.hwm) : at;
    // One write per view: a chunk per event would cost a syscall buffer each, times every open watch.
    this.batched(() => this.sendTransitions(this.transitionsOf(due.keys), prefix, at, count));
    this.advance(at);
    for (const [type, n] of Object.entries(counts)) if (n > 0) metrics.synthesized.inc({ type, cause: due.cause }, n);
  }

  /** Whether the object's decision differs from what the client holds. */
  private transitionDue(entry: Entry): boolean {
    const out = this.decide(entry.obj);
    return out ? !entry.held || !sameContent(out, entry.held) : !!entry.held;
  }

  /** The objects among `keys` whose decision differs from what the client holds, with it. */
  private transitionsOf(keys: Iterable<string>): Array<{ entry: Entry; out: KubeObject | null }> {
    const out: Array<{ entry: Entry; out: KubeObject | null }> = [];
    for (const key of keys) {
      const entry = this.entries.get(key);
      if (entry && this.transitionDue(entry)) out.push({ entry, out: this.decide(entry.obj) });
    }
    return out;
  }

  /** Sends the transitions, all at `prefix` but the last at `last`; a MODIFIED only where it changes the held resourceVersion. */
  private sendTransitions(transitions: Array<{ entry: Entry; out: KubeObject | null }>, prefix: number, last: number, count: (type: 'ADDED' | 'MODIFIED' | 'DELETED') => void): void {
    // An object held at the prefix revision goes last, where its MODIFIED gets a newer one.
    const atPrefix = transitions.findIndex((t) => t.out && t.entry.held?.metadata.resourceVersion === String(prefix));
    if (atPrefix >= 0) transitions.push(...transitions.splice(atPrefix, 1));
    transitions.forEach(({ entry, out }, i) => {
      const rv = i === transitions.length - 1 ? last : prefix;
      const at = String(rv);
      const held = entry.held;
      const exact = entry.exact !== false;
      entry.exact = true;
      if (!held) {
        entry.held = this.store.atRevision(out!, at);
        this.send('ADDED', entry.held);
        count('ADDED');
      } else if (!out) {
        entry.held = undefined;
        this.send('DELETED', this.store.atRevision(held, at));
        count('DELETED');
      } else {
        entry.held = this.store.atRevision(out, at);
        // Past the last delivered resourceVersion, nothing the client holds has this one.
        if (rv > this.hwm || (exact && held.metadata.resourceVersion !== at)) {
          this.send('MODIFIED', entry.held);
          count('MODIFIED');
        } else {
          // docs/design.md rule 5, mechanism (a): the client may already hold this resourceVersion, so a MODIFIED could
          // look like a resync to its informer; DELETED + ADDED always reaches the handlers.
          this.send('DELETED', this.store.atRevision(held, at));
          this.send('ADDED', entry.held);
          count('DELETED');
          count('ADDED');
        }
      }
    });
  }

  private *affectedEntries(affected: Affected): Iterable<[string, Entry]> {
    if (affected === 'all') return yield* this.entries;
    for (const key of this.store.keysOf(affected)) {
      const entry = this.entries.get(key);
      if (entry) yield [key, entry];
    }
  }

  /** Ends the watch with 410 Expired: the client re-lists. */
  private expire(): void {
    this.write(JSON.stringify({ type: 'ERROR', object: expired(String(this.hwm), this.deps.revisions.high) }));
    this.close();
  }

  private advance(rv: string | number | undefined): void {
    const n = typeof rv === 'number' ? rv : rvNumber(rv);
    if (n <= this.hwm) return;
    this.hwm = n;
    this.deps.registry.delivered(this.resource, n);
  }

  private send(type: EventType, object: KubeObject): void {
    if (this.opts.metadataOnly) this.write(JSON.stringify({ type, object: toMetadata(object) }));
    else this.write(`{"type":"${type}","object":${this.store.json(object)}}`);
  }

  /** Runs fn with every line it writes joined into one write (unless a batch is open already). */
  private batched<T>(fn: () => T): T {
    if (this.batch) return fn();
    this.batch = [];
    try {
      return fn();
    } finally {
      const lines = this.batch;
      this.batch = undefined;
      if (lines && lines.length > 0) this.write(lines.join('\n'));
    }
  }

  private write(line: string): void {
    if (this.closed) return;
    if (this.batch) {
      this.batch.push(line);
      return;
    }
    const res = this.ctx.res;
    res.write(line + '\n');
    if (res.writableLength > MAX_BUFFERED_BYTES) {
      this.ctx.log.warn({ component: this.ctx.component, resource: this.resource }, 'watch client too slow; closing its watch');
      this.deps.registry.metrics.slowClientsCut.inc({ resource: this.resource });
      this.close();
    }
  }

  async drain(): Promise<void> {
    if (!this.closed) await drained(this.ctx.res);
  }

  close(): void {
    if (this.closed) return;
    // What an open batch holds still goes out: an ERROR event that ends the watch may be among it.
    const pending = this.batch;
    this.batch = undefined;
    if (pending && pending.length > 0 && !this.ctx.res.writableEnded) this.ctx.res.write(pending.join('\n') + '\n');
    this.closed = true;
    clearTimeout(this.due?.timer);
    this.due = undefined;
    this.store.release();
    this.abort.abort();
    this.deps.registry.remove(this);
    if (!this.ctx.res.writableEnded) this.ctx.res.end();
  }
}

/** Serves one targeted WATCH request through a view. */
export async function serveWatch(ctx: InterceptContext, subject: ViewSubject, deps: ViewDeps): Promise<void> {
  const { req, res, info } = ctx;
  const { metadataOnly, acceptable } = negotiate(req.headers.accept);
  if (!acceptable) return sendJson(res, 406, statusObject(406, 'NotAcceptable', 'only application/json is served for filtered resources'));
  const url = new URL(req.url ?? '/', 'http://x');
  const query = url.searchParams;
  const streaming = query.get('sendInitialEvents') === 'true';
  const rv = query.get('resourceVersion') ?? '';
  // A malformed query goes upstream untouched: the client gets the apiserver's own error.
  const wellFormed = wellFormedVersionQuery(query, true);
  const resumeAt = wellFormed && !streaming && rv !== '' && rv !== '0' ? rvNumber(rv) : 0;
  const view = new WatchView(ctx, subject, deps, { metadataOnly, streaming });
  res.once('close', () => view.close());

  if (wellFormed && streaming && subject.marked()) {
    // A streaming list from before the last scope change restarts from a consistent read
    // (docs/design.md mechanism (c)), and its objects get the change's revision as their mark once that revision exists.
    const changedAt = deps.registry.changedAt(info.resource);
    if (changedAt > rvNumber(rv)) query.delete('resourceVersion');
    if (changedAt > deps.revisions.high) await awaitRevision(ctx, deps, changedAt, view.signal);
  }

  if (resumeAt && view.isRaw) view.resumeRaw(resumeAt);
  else if (resumeAt) {
    // docs/design.md mechanism (b): a client that resumes from before a scope change holds a view of the old scope.
    if (subject.marked() && subject.transitions() && !deps.registry.canResume(info.resource, resumeAt)) return watchError(res, expired(rv, deps.revisions.high));
    const generation = deps.registry.generation(info.resource);
    const seeded = await seedAt(ctx, deps, rv, view);
    if (!seeded) return;
    // The seed was decided with a scope the client never saw: let it re-list.
    if (subject.marked() && deps.registry.generation(info.resource) !== generation) return watchError(res, expired(rv, deps.revisions.high));
  }

  const upstream = await getUpstream(ctx, url.pathname + url.search, view.signal);
  const type = String(upstream.headers['content-type'] ?? '');
  if (upstream.statusCode !== 200 || !type.startsWith('application/json')) return relay(res, upstream);
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache, private' });
  res.flushHeaders();
  deps.registry.add(view);
  // A scope change applied while the view was being built has not reached it yet.
  view.catchUp('late');
  try {
    read: for await (const lines of jsonLineBatches(upstream.body)) {
      for (let next = 0; next < lines.length; ) {
        next = view.onLines(lines, next);
        if (next < 0 || view.isClosed) break read;
        if (view.converting) await view.converting;
      }
      await view.drain();
    }
  } catch (err) {
    if (!view.signal.aborted) ctx.log.info({ err: (err as Error).message, resource: info.resource }, 'upstream watch ended');
  } finally {
    view.close();
  }
}

/** Learns what a resuming client holds: the upstream state at its resourceVersion, filtered. */
async function seedAt(ctx: InterceptContext, deps: ViewDeps, rv: string, view: WatchView): Promise<boolean> {
  const items = await listAt(ctx, deps, rvNumber(rv), view.signal);
  if (items instanceof UpstreamStatus) {
    if (items.statusCode === 410) watchError(ctx.res, expired(rv, view.highestSeen));
    else sendJsonText(ctx.res, items.statusCode, items.body, upstreamHeaders(items.headers));
    return false;
  }
  view.seed(items, rvNumber(rv));
  return true;
}

/** A seed read answered with an error; kept whole, since several watches may share it. */
class UpstreamStatus extends Error {
  constructor(
    readonly statusCode: number,
    readonly body: string,
    readonly headers: UpstreamResponse['headers'],
  ) {
    super(`upstream answered ${statusCode}`);
  }
}

/** Seed reads in flight, by list identity and revision: watches opened together share one. */
const seeding = new Map<string, Promise<KubeObject[] | UpstreamStatus>>();

/**
 * The upstream state at exactly revision rv, with the watch's selectors, typed as watch events are.
 * Watches opened together from one list's resourceVersion (the agents of a node starting) share one
 * read; reads of other revisions take turns in the seed slots, never in the lists' ones.
 */
async function listAt(ctx: InterceptContext, deps: ViewDeps, rv: number, signal: AbortSignal): Promise<KubeObject[] | UpstreamStatus> {
  const url = new URL(ctx.req.url ?? '/', 'http://x');
  const identity = listIdentity(url);
  const recent = deps.registry.recentList(identity, rv);
  if (recent) return recent;
  const key = `${identity}@${rv}`;
  let read = seeding.get(key);
  if (!read) {
    // The shared read belongs to no one watch: it is not aborted when the first asker leaves.
    read = seedSlots.run(() => readListAt(ctx, deps, url, identity, rv)).finally(() => seeding.delete(key));
    seeding.set(key, read);
  }
  return abortable(read, signal);
}

async function readListAt(ctx: InterceptContext, deps: ViewDeps, url: URL, identity: string, rv: number): Promise<KubeObject[] | UpstreamStatus> {
  const list = new URLSearchParams();
  for (const key of ['labelSelector', 'fieldSelector']) {
    const value = url.searchParams.get(key);
    if (value) list.set(key, value);
  }
  list.set('resourceVersion', String(rv));
  list.set('resourceVersionMatch', 'Exact');
  const upstream = await getUpstream(ctx, `${url.pathname}?${list}`, AbortSignal.timeout(UPSTREAM_BODY_DEADLINE_MS));
  if (upstream.statusCode !== 200) return new UpstreamStatus(upstream.statusCode, await readAll(upstream.body), upstream.headers);
  const body = JSON.parse(await readAll(upstream.body)) as { kind: string; apiVersion: string; items: KubeObject[] };
  const kind = body.kind.replace(/List$/, '');
  for (const item of body.items) {
    // Freshly decoded, not shared yet: typed in place.
    item.kind ??= kind;
    item.apiVersion ??= body.apiVersion;
  }
  deps.registry.rememberList(identity, rv, body.items);
  return body.items;
}

/** Resolves as the promise does, or rejects when the signal aborts first. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** An apiserver-style failed watch: 200, one ERROR event, end. */
function watchError(res: ServerResponse, statusObject: object): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ type: 'ERROR', object: statusObject }) + '\n');
}
