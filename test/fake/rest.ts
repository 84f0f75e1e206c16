// Resource request handlers: GET / LIST / WATCH / POST / PUT / PATCH / DELETE (+ /status) with apiserver semantics.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import type { ResourceDef } from './resources.js';
import { and, fieldPredicate, labelPredicate, SelectorError, type Predicate } from './selectors.js';
import { S, StatusError, type Status } from './status.js';
import { withRv, type Item, type Store, type StoreEvent } from './store.js';
import { negotiate, renderBookmark, renderEvent, renderList, renderObject, typedJson, type OutputMode } from './render.js';
import { jsonPatch, mergePatch } from './patch.js';

export interface Route {
  def: ResourceDef;
  apiVersion: string;
  namespace?: string;
  name?: string;
  sub?: string;
  legacyWatch: boolean;
}

export interface RestOptions {
  bookmarkIntervalMs: number;
  gzipMinBytes?: number;
  /** Called for each answer sent gzipped. */
  onGzipped?: (req: IncomingMessage) => void;
  tooLargeWaitMs: number;
}

const LIST_EXPIRED = 'The resourceVersion for the provided list is too old.';
const CONTINUE_EXPIRED =
  'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, ' +
  'or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an ' +
  'inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.';

type FieldErr = { field: string; type: string; detail: string };

function goBool(v: string | null): boolean | undefined {
  if (v === null) return undefined;
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(v)) return false;
  throw new StatusError(S.badRequest(`strconv.ParseBool: parsing ${JSON.stringify(v)}: invalid syntax`));
}

function parseRv(s: string): number {
  if (!/^\d+$/.test(s)) {
    throw new StatusError(S.invalid('ListOptions', 'meta.k8s.io', '', [{ field: 'resourceVersion', type: 'Invalid value', detail: `"${s}": strconv.ParseUint: parsing "${s}": invalid syntax` }]));
  }
  return Number(s);
}

function lowerBound(keys: string[], k: string): number {
  let lo = 0, hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid] < k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export function encodeContinue(rv: number, start: string): string {
  return Buffer.from(JSON.stringify({ v: 'meta.k8s.io/v1', rv, start })).toString('base64url');
}

function decodeContinue(tok: string): { rv: number; start: string } {
  try {
    const o = JSON.parse(Buffer.from(tok, 'base64url').toString('utf8'));
    if (o && o.v === 'meta.k8s.io/v1' && typeof o.rv === 'number' && typeof o.start === 'string') return { rv: o.rv, start: o.start };
  } catch {
    // fall through
  }
  throw new StatusError(S.badRequest('continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)'));
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

async function readJson(req: IncomingMessage, optional = false): Promise<any> {
  const buf = await readBody(req);
  if (buf.length === 0 && optional) return undefined;
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch (e) {
    throw new StatusError(S.badRequest(`the object provided is unrecognized or invalid: ${(e as Error).message}`));
  }
}

/** What a watcher with predicate `pred` sees of a store event (selector transitions included), or undefined. */
function classify(ev: StoreEvent & { prevAtRv?: Item }, pred: Predicate | undefined): [string, Item] | undefined {
  if (!pred) return [ev.type, ev.obj];
  switch (ev.type) {
    case 'ADDED':
      return pred(ev.obj) ? ['ADDED', ev.obj] : undefined;
    case 'DELETED':
      return pred(ev.prev!) ? ['DELETED', ev.obj] : undefined;
    case 'MODIFIED': {
      const was = pred(ev.prev!), is = pred(ev.obj);
      if (was && is) return ['MODIFIED', ev.obj];
      if (is) return ['ADDED', ev.obj];
      if (was) return ['DELETED', (ev.prevAtRv ??= withRv(ev.prev!, ev.rv))];
      return undefined;
    }
  }
}

export class Watch {
  private first = true;
  private unsubscribe?: () => void;
  private timers: NodeJS.Timeout[] = [];
  private done = false;

  constructor(
    private readonly rest: Rest,
    readonly res: ServerResponse,
    readonly route: Route,
    private readonly mode: OutputMode,
    private readonly pred: Predicate | undefined,
    private readonly bookmarks: boolean,
  ) {
    rest.watches.add(this);
    res.on('close', () => this.cleanup());
  }

  write(s: string): void {
    if (!this.done && !this.res.destroyed) this.res.write(s);
  }

  event(type: string, item: Item): string {
    const line = renderEvent(this.route.def, this.route.apiVersion, this.mode, type, item, this.first);
    this.first = false;
    return line;
  }

  /** Write many lines in few chunks (initial state). */
  writeBatch(lines: string[]): void {
    let buf = '';
    for (const l of lines) {
      buf += l;
      if (buf.length > 65536) { this.write(buf); buf = ''; }
    }
    if (buf) this.write(buf);
  }

  bookmark(initialEventsEnd: boolean): void {
    this.write(renderBookmark(this.route.def, this.route.apiVersion, this.mode, this.rest.store.rv, initialEventsEnd));
  }

  onEvent = (ev: StoreEvent): void => {
    const c = classify(ev, this.pred);
    if (c) this.write(this.event(c[0], c[1]));
  };

  start(timeoutSeconds: number): void {
    this.unsubscribe = this.rest.store.subscribe(this.route.def.name, this.onEvent);
    if (this.bookmarks && this.rest.opts.bookmarkIntervalMs > 0) {
      this.timers.push(setInterval(() => this.bookmark(false), this.rest.opts.bookmarkIntervalMs));
    }
    if (timeoutSeconds > 0) {
      // As the apiserver's cacher: a bookmark 2 s before the deadline, when there is time for one.
      if (this.bookmarks && timeoutSeconds > 2) this.timers.push(setTimeout(() => this.bookmark(false), (timeoutSeconds - 2) * 1000));
      this.timers.push(
        setTimeout(() => {
          if (this.bookmarks) this.bookmark(false);
          this.end();
        }, timeoutSeconds * 1000),
      );
    }
  }

  errorAndEnd(st: Status): void {
    this.write(JSON.stringify({ type: 'ERROR', object: st }) + '\n');
    this.end();
  }

  end(): void {
    this.cleanup();
    if (!this.res.writableEnded) this.res.end();
  }

  /** Abruptly cut the connection (no terminating chunk). */
  destroy(): void {
    this.cleanup();
    this.res.socket?.destroy();
    this.res.destroy();
  }

  private cleanup(): void {
    if (this.done) return;
    this.done = true;
    this.unsubscribe?.();
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    this.rest.watches.delete(this);
  }
}

export class Rest {
  readonly watches = new Set<Watch>();

  constructor(
    readonly store: Store,
    readonly opts: RestOptions,
  ) {}

  send(req: IncomingMessage, res: ServerResponse, code: number, body: string, contentType = 'application/json'): void {
    const headers: Record<string, string | number> = {
      'Audit-Id': randomUUID(),
      'Cache-Control': 'no-cache, private',
      'Content-Type': contentType,
    };
    let payload: Buffer | string = body;
    const min = this.opts.gzipMinBytes;
    if (min !== undefined && Buffer.byteLength(body) >= min && /\bgzip\b/i.test(String(req.headers['accept-encoding'] ?? ''))) {
      payload = gzipSync(body, { level: 1 });
      headers['Content-Encoding'] = 'gzip';
      headers['Vary'] = 'Accept-Encoding';
      this.opts.onGzipped?.(req);
    }
    headers['Content-Length'] = Buffer.byteLength(payload);
    res.writeHead(code, headers);
    res.end(payload);
  }

  sendStatus(req: IncomingMessage, res: ServerResponse, st: Status): void {
    this.send(req, res, st.code, JSON.stringify(st));
  }

  private async ensureRv(n: number): Promise<void> {
    if (n > this.store.rv && !(await this.store.waitForRv(n, this.opts.tooLargeWaitMs))) {
      throw new StatusError(S.tooLarge(n, this.store.rv));
    }
  }

  private predicate(route: Route, q: URLSearchParams, name?: string): Predicate | undefined {
    try {
      const ns = route.def.namespaced ? route.namespace : undefined;
      return and(
        ns !== undefined ? (o) => o.metadata.namespace === ns : undefined,
        name !== undefined ? (o) => o.metadata.name === name : undefined,
        labelPredicate(q.get('labelSelector')),
        fieldPredicate(q.get('fieldSelector'), route.def),
      );
    } catch (e) {
      if (e instanceof SelectorError) throw new StatusError(S.badRequest(e.message));
      throw e;
    }
  }

  async handle(req: IncomingMessage, res: ServerResponse, route: Route, q: URLSearchParams): Promise<void> {
    const { def, name, sub } = route;
    const method = req.method ?? 'GET';
    if (sub) {
      if (sub === 'status' && def.subresources.includes('status') && name && !route.legacyWatch && (route.namespace !== undefined) === def.namespaced) {
        if (method === 'GET') return this.get(req, res, route, q);
        if (method === 'PUT') return this.update(req, res, route, q);
        if (method === 'PATCH') return this.patch(req, res, route, q);
        throw new StatusError(S.methodNotAllowed(method));
      }
      if (['exec', 'attach', 'portforward'].includes(sub) && def.subresources.includes(sub) && name) {
        throw new StatusError(S.badRequest('Upgrade request required'));
      }
      throw new StatusError(S.notFoundPath());
    }
    const watch = route.legacyWatch || (q.has('watch') && !['false', '0'].includes((q.get('watch') ?? '').toLowerCase()));
    if (watch) {
      if (method !== 'GET') throw new StatusError(S.methodNotAllowed(method));
      return this.watch(req, res, route, q);
    }
    // a named object of a namespaced resource needs its namespace
    if (name && def.namespaced && route.namespace === undefined) throw new StatusError(S.notFoundPath());
    switch (method) {
      case 'GET':
        return name ? this.get(req, res, route, q) : this.list(req, res, route, q);
      case 'POST':
        if (name) throw new StatusError(S.methodNotAllowed(method));
        return this.create(req, res, route, q);
      case 'PUT':
        if (!name) throw new StatusError(S.methodNotAllowed(method));
        return this.update(req, res, route, q);
      case 'PATCH':
        if (!name) throw new StatusError(S.methodNotAllowed(method));
        return this.patch(req, res, route, q);
      case 'DELETE':
        return name ? this.remove(req, res, route, q) : this.removeCollection(req, res, route, q);
      default:
        throw new StatusError(S.methodNotAllowed(method));
    }
  }

  // ------------------------------------------------------------------ reads

  private async get(req: IncomingMessage, res: ServerResponse, route: Route, q: URLSearchParams): Promise<void> {
    const rv = q.get('resourceVersion');
    if (rv && rv !== '0') await this.ensureRv(parseRv(rv));
    const item = this.store.get(route.def.name, route.namespace, route.name!);
    if (!item) throw new StatusError(S.notFound(route.def, route.name!));
    const mode = negotiate(req.headers.accept, 'object', q.get('includeObject'));
    this.send(req, res, 200, renderObject(route.def, route.apiVersion, mode, item));
  }

  private async list(req: IncomingMessage, res: ServerResponse, route: Route, q: URLSearchParams): Promise<void> {
    const { def } = route;
    const rvParam = q.get('resourceVersion') ?? '';
    const match = q.get('resourceVersionMatch') ?? '';
    const cont = q.get('continue') ?? '';
    const limit = Math.max(0, parseInt(q.get('limit') ?? '0', 10) || 0);
    const errs: FieldErr[] = [];
    if (match) {
      if (!rvParam) errs.push({ field: 'resourceVersionMatch', type: 'Forbidden', detail: 'resourceVersionMatch is forbidden unless resourceVersion is provided' });
      if (cont) errs.push({ field: 'resourceVersionMatch', type: 'Forbidden', detail: 'resourceVersionMatch is forbidden when continue is provided' });
      if (match !== 'Exact' && match !== 'NotOlderThan') {
        errs.push({ field: 'resourceVersionMatch', type: 'Unsupported value', detail: `"${match}": supported values: "Exact", "NotOlderThan", ""` });
      }
      if (match === 'Exact' && rvParam === '0') errs.push({ field: 'resourceVersionMatch', type: 'Forbidden', detail: 'resourceVersionMatch "exact" is forbidden for resourceVersion "0"' });
    }
    if (q.has('sendInitialEvents')) errs.push({ field: 'sendInitialEvents', type: 'Forbidden', detail: 'sendInitialEvents is forbidden for list' });
    if (errs.length) throw new StatusError(S.invalid('ListOptions', 'meta.k8s.io', '', errs));
    const pred = this.predicate({ ...route, namespace: undefined }, q); // namespace handled by key range
    const mode = negotiate(req.headers.accept, 'list', q.get('includeObject'));

    let state: Map<string, Item>;
    let listRv: number;
    let start = '';
    if (cont) {
      if (rvParam && rvParam !== '0') throw new StatusError(S.badRequest('specifying resource version is not allowed when using continue'));
      const tok = decodeContinue(cont);
      start = tok.start;
      if (tok.rv <= 0) {
        state = this.store.current(def.name);
        listRv = this.store.rv;
      } else {
        if (tok.rv < this.store.compactedRv || tok.rv > this.store.rv) {
          throw new StatusError(S.expired(CONTINUE_EXPIRED, encodeContinue(-1, tok.start)));
        }
        state = this.store.stateAt(def.name, tok.rv, CONTINUE_EXPIRED);
        listRv = tok.rv;
      }
    } else if (!rvParam) {
      state = this.store.current(def.name);
      listRv = this.store.rv;
    } else {
      const n = parseRv(rvParam);
      const exact = match === 'Exact' || (match === '' && limit > 0 && n !== 0);
      if (n > 0) await this.ensureRv(n);
      if (exact) {
        state = this.store.stateAt(def.name, n, LIST_EXPIRED);
        listRv = n;
      } else {
        state = this.store.current(def.name);
        listRv = this.store.rv;
      }
    }

    let keys = this.store.sortedKeys(def.name, state);
    if (def.namespaced && route.namespace !== undefined) {
      keys = keys.slice(lowerBound(keys, route.namespace + '/'), lowerBound(keys, route.namespace + '0'));
    }
    let i = start ? lowerBound(keys, start) : 0;
    const items: Item[] = [];
    for (; i < keys.length; i++) {
      if (limit > 0 && items.length >= limit) break;
      const it = state.get(keys[i])!;
      if (!pred || pred(it)) items.push(it);
    }
    const meta: Record<string, unknown> = { resourceVersion: String(listRv) };
    if (limit > 0 && i < keys.length) {
      meta.continue = encodeContinue(listRv, keys[i - 1] + '\u0000');
      if (!pred) meta.remainingItemCount = keys.length - i;
    }
    this.send(req, res, 200, renderList(def, route.apiVersion, mode, meta, items));
  }

  private async watch(req: IncomingMessage, res: ServerResponse, route: Route, q: URLSearchParams): Promise<void> {
    const { def } = route;
    const rvParam = q.get('resourceVersion') ?? '';
    const match = q.get('resourceVersionMatch') ?? '';
    const sie = goBool(q.get('sendInitialEvents'));
    const errs: FieldErr[] = [];
    if (sie !== undefined && match !== 'NotOlderThan') {
      errs.push({ field: 'resourceVersionMatch', type: 'Forbidden', detail: 'sendInitialEvents requires setting resourceVersionMatch to NotOlderThan' });
    }
    if (match) {
      if (sie === undefined) errs.push({ field: 'resourceVersionMatch', type: 'Forbidden', detail: 'resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided' });
      if (match !== 'NotOlderThan') errs.push({ field: 'resourceVersionMatch', type: 'Unsupported value', detail: `"${match}": supported values: "NotOlderThan"` });
      if (q.get('continue')) errs.push({ field: 'resourceVersionMatch', type: 'Forbidden', detail: 'resourceVersionMatch is forbidden when continue is provided' });
    }
    if (errs.length) throw new StatusError(S.invalid('ListOptions', 'meta.k8s.io', '', errs));
    const bookmarks = goBool(q.get('allowWatchBookmarks')) === true;
    const timeoutSeconds = parseInt(q.get('timeoutSeconds') ?? '0', 10) || 0;
    const pred = this.predicate(route, q, route.name);
    const mode = negotiate(req.headers.accept, 'object', q.get('includeObject'));
    const n = rvParam && rvParam !== '0' ? parseRv(rvParam) : undefined;
    const initial = sie ?? n === undefined;

    let tooLarge = false;
    if (n !== undefined && n > this.store.rv) tooLarge = !(await this.store.waitForRv(n, this.opts.tooLargeWaitMs));
    if (res.destroyed) return;

    // From here on everything is synchronous, so no store event can slip between the initial state and the subscription.
    res.writeHead(200, { 'Audit-Id': randomUUID(), 'Cache-Control': 'no-cache, private', 'Content-Type': 'application/json' });
    res.flushHeaders();
    const w = new Watch(this, res, route, mode, pred, bookmarks);
    if (tooLarge) return w.errorAndEnd(S.tooLarge(n!, this.store.rv));
    if (initial) {
      const state = this.store.current(def.name);
      const lines: string[] = [];
      for (const k of this.store.sortedKeys(def.name, state)) {
        const it = state.get(k)!;
        if (!pred || pred(it)) lines.push(w.event('ADDED', it));
      }
      w.writeBatch(lines);
      if (sie === true && bookmarks) w.bookmark(true);
    } else if (n !== undefined) {
      if (n < this.store.compactedRv) {
        return w.errorAndEnd(S.expired(`too old resource version: ${n} (${this.store.compactedRv})`));
      }
      const lines: string[] = [];
      for (const ev of this.store.eventsAfter(def.name, n)) {
        const c = classify(ev, pred);
        if (c) lines.push(w.event(c[0], c[1]));
      }
      w.writeBatch(lines);
    }
    w.start(timeoutSeconds);
  }

  // ------------------------------------------------------------------ writes

  private checkNamespace(route: Route, body: any): void {
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw new StatusError(S.badRequest('the object provided is unrecognized or invalid'));
    body.metadata = { ...(body.metadata ?? {}) };
    if (route.def.namespaced) {
      if (route.namespace === undefined) throw new StatusError(S.notFoundPath());
      if (body.metadata.namespace && body.metadata.namespace !== route.namespace) {
        throw new StatusError(S.badRequest('the namespace of the provided object does not match the namespace sent on the request'));
      }
      body.metadata.namespace = route.namespace;
    }
  }

  private respond(req: IncomingMessage, res: ServerResponse, route: Route, q: URLSearchParams, code: number, item: Item): void {
    this.send(req, res, code, renderObject(route.def, route.apiVersion, negotiate(req.headers.accept, 'object', q.get('includeObject')), item));
  }

  private async create(req: IncomingMessage, res: ServerResponse, route: Route, q: URLSearchParams): Promise<void> {
    const body = await readJson(req);
    this.checkNamespace(route, body);
    const item = this.store.create(route.def.name, body, { dryRun: q.get('dryRun') === 'All' });
    this.respond(req, res, route, q, 201, item);
  }

  private existing(route: Route): Item {
    const old = this.store.get(route.def.name, route.namespace, route.name!);
    if (!old) throw new StatusError(S.notFound(route.def, route.name!));
    return old;
  }

  /** Apply the status-subresource split and store the new state. */
  private commitUpdate(route: Route, q: URLSearchParams, old: Item, next: any): Item {
    let obj: any;
    if (route.sub === 'status') obj = { ...old, status: next.status, metadata: { ...old.metadata, resourceVersion: next.metadata?.resourceVersion } };
    else if (route.def.subresources.includes('status')) obj = { ...next, status: old.status };
    else obj = next;
    return this.store.update(route.def.name, obj, { expectedRv: obj.metadata?.resourceVersion, skipNoop: true, dryRun: q.get('dryRun') === 'All' });
  }

  private async update(req: IncomingMessage, res: ServerResponse, route: Route, q: URLSearchParams): Promise<void> {
    const body = await readJson(req);
    this.checkNamespace(route, body);
    if (body.metadata.name && body.metadata.name !== route.name) {
      throw new StatusError(S.badRequest(`the name of the object (${body.metadata.name}) does not match the name on the URL (${route.name})`));
    }
    body.metadata.name = route.name;
    const old = this.existing(route);
    this.respond(req, res, route, q, 200, this.commitUpdate(route, q, old, body));
  }

  private async patch(req: IncomingMessage, res: ServerResponse, route: Route, q: URLSearchParams): Promise<void> {
    const ct = String(req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (ct !== 'application/merge-patch+json' && ct !== 'application/strategic-merge-patch+json' && ct !== 'application/json-patch+json') {
      await readBody(req);
      throw new StatusError(S.unsupportedMediaType(ct));
    }
    const patch = await readJson(req);
    const old = this.existing(route);
    const base = JSON.parse(typedJson(route.def, route.apiVersion, old));
    let next: any;
    if (ct === 'application/json-patch+json') next = jsonPatch(base, patch);
    else {
      if (!patch || typeof patch !== 'object' || Array.isArray(patch)) throw new StatusError(S.badRequest('the object provided is unrecognized or invalid'));
      next = mergePatch(base, patch);
    }
    if (!next || typeof next !== 'object') throw new StatusError(S.badRequest('the patched object is not an object'));
    next.metadata = { ...(next.metadata ?? {}) };
    if (next.metadata.name !== route.name || (route.def.namespaced && next.metadata.namespace !== route.namespace)) {
      throw new StatusError(S.badRequest('metadata.name and metadata.namespace cannot be changed by a patch'));
    }
    this.respond(req, res, route, q, 200, this.commitUpdate(route, q, old, next));
  }

  private async remove(req: IncomingMessage, res: ServerResponse, route: Route, q: URLSearchParams): Promise<void> {
    const opts = (await readJson(req, true)) ?? {};
    const old = this.existing(route);
    if (q.get('dryRun') === 'All' || (Array.isArray(opts.dryRun) && opts.dryRun.includes('All'))) return this.respond(req, res, route, q, 200, old);
    const gone = this.store.delete(route.def.name, route.namespace, route.name!, opts.preconditions ?? {});
    this.respond(req, res, route, q, 200, gone!);
  }

  private async removeCollection(req: IncomingMessage, res: ServerResponse, route: Route, q: URLSearchParams): Promise<void> {
    await readBody(req);
    const { def } = route;
    if (def.namespaced && route.namespace === undefined) throw new StatusError(S.notFoundPath());
    const pred = this.predicate(route, q);
    const state = this.store.current(def.name);
    const victims = this.store.sortedKeys(def.name, state).map((k) => state.get(k)!).filter((it) => !pred || pred(it));
    const gone = victims.map((it) => this.store.delete(def.name, it.metadata.namespace, it.metadata.name)!);
    this.send(req, res, 200, renderList(def, route.apiVersion, { as: 'json' }, { resourceVersion: String(this.store.rv) }, gone));
  }
}
