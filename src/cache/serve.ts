// Answers LIST, GET and WATCH of a cached resource with the apiserver's semantics
// (staging/src/k8s.io/apiserver/pkg/storage/cacher): which revision a read is served at, paging,
// selectors, watches from the history with the cacher's selector transitions, streaming lists,
// bookmarks and timeouts. Anything it cannot answer exactly returns false before writing a byte:
// the request then goes upstream unchanged.
import { requestPredicate, type Predicate } from './selectors.js';
import { TooOldError, atRevision, type CacheEvent, type CachedObject, type StoreListener, type WatchCacheStore } from './store.js';
import { apiVersionOf, type CachedResource } from './resources.js';

export interface CacheRequest {
  verb: 'get' | 'list' | 'watch';
  namespace: string;
  name: string;
  query: URLSearchParams;
}

/** Where an answer goes: an HTTP response with backpressure, seen by the cache as text. */
export interface Responder {
  begin(status: number, headers: Record<string, string>): void;
  write(text: string): void;
  end(): void;
  /** Bytes written but not yet taken by the client. */
  readonly bufferedBytes: number;
  /** Called once when the client goes away. */
  onClose(fn: () => void): void;
}

export interface ServedResource {
  resource: CachedResource;
  store: WatchCacheStore;
  /** Resolves true once a consistent read may be served (see freshness.ts). */
  fresh(): Promise<boolean>;
  bookmarkIntervalMs: number;
  /** A watch whose client holds more than this many bytes unread is ended. */
  maxBufferedBytes: number;
  onSlowClientCut(): void;
}

/**
 * A consistent read of at most this many objects goes upstream: proving the cache fresh costs a
 * `limit=1` LIST anyway (and up to a second for a quiet resource), so the answer itself is as cheap.
 * The view engine's revision probes (`limit=1`) and consistent GETs are such reads.
 */
export const SMALL_CONSISTENT_READ = 10;

/** How long a read at a revision the cache has not reached waits (the apiserver waits 3 s too). */
export const WAIT_FOR_REVISION_MS = 3_000;

const KNOWN_PARAMS = new Set(['timeout', 'resourceVersion', 'resourceVersionMatch', 'limit', 'continue', 'labelSelector', 'fieldSelector', 'timeoutSeconds', 'allowWatchBookmarks', 'watch', 'sendInitialEvents']);

const JSON_HEADERS = { 'content-type': 'application/json', 'cache-control': 'no-cache, private' };

/** Whether the query has only parameters the cache serves exactly (pretty, timeout, ... go upstream). */
export function servableQuery(query: URLSearchParams): boolean {
  for (const key of query.keys()) if (!KNOWN_PARAMS.has(key)) return false;
  return true;
}

type ReadPoint = { at: 'current' } | { at: 'exact'; rv: number };

/** The revision a LIST or GET is served at, as the cacher decides it; undefined = go upstream. */
async function readPoint(cache: ServedResource, query: URLSearchParams, verb: 'get' | 'list'): Promise<ReadPoint | undefined> {
  const rv = query.get('resourceVersion') ?? '';
  let match = query.get('resourceVersionMatch') ?? '';
  if (match !== '' && match !== 'NotOlderThan' && match !== 'Exact') return undefined;
  // GetOptions has no resourceVersionMatch: what the apiserver makes of one is its own to say.
  if (verb === 'get' && match !== '') return undefined;
  if (rv === '') return match === '' && (await cache.fresh()) ? { at: 'current' } : undefined;
  if (rv === '0') return match === 'Exact' ? undefined : { at: 'current' };
  if (!/^[1-9]\d*$/.test(rv)) return undefined;
  const n = Number(rv);
  // A LIST with resourceVersion=N and a limit but no match is Exact, for old clients.
  if (match === '' && verb === 'list' && query.has('limit')) match = 'Exact';
  if (!(await cache.store.waitFor(n, WAIT_FOR_REVISION_MS))) return undefined;
  if (match !== 'Exact') return { at: 'current' };
  return n >= cache.store.oldest ? { at: 'exact', rv: n } : undefined;
}

interface ContinueToken {
  rv: number;
  start: string;
}

const TOKEN_PREFIX = 'pvc1.';

export function encodeContinue(token: ContinueToken): string {
  return TOKEN_PREFIX + Buffer.from(JSON.stringify(token)).toString('base64url');
}

/** The cache's own continue tokens; undefined for any other (an apiserver's: that goes upstream). */
export function decodeContinue(text: string): ContinueToken | undefined {
  if (!text.startsWith(TOKEN_PREFIX)) return undefined;
  try {
    const t = JSON.parse(Buffer.from(text.slice(TOKEN_PREFIX.length), 'base64url').toString('utf8')) as ContinueToken;
    return Number.isInteger(t.rv) && typeof t.start === 'string' ? t : undefined;
  } catch {
    return undefined;
  }
}

function statusJson(code: number, reason: string, message: string, details?: object): string {
  return JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code });
}

const EXPIRED_CONTINUE =
  'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.';

function sendText(out: Responder, status: number, body: string): void {
  out.begin(status, { ...JSON_HEADERS, 'content-length': String(Buffer.byteLength(body)) });
  out.write(body);
  out.end();
}

function objectText(r: CachedResource, obj: CachedObject): string {
  return `{"kind":"${r.kind}","apiVersion":"${apiVersionOf(r)}",${obj.json.slice(1)}`;
}

async function serveList(cache: ServedResource, req: CacheRequest, match: Predicate, everything: boolean, out: Responder): Promise<boolean> {
  const { query } = req;
  const limit = query.has('limit') ? Number(query.get('limit')) : 0;
  if (!Number.isInteger(limit) || limit < 0) return false;
  const token = query.get('continue');
  let point: ReadPoint | undefined;
  let start = '';
  if (token) {
    const t = decodeContinue(token);
    if (!t || query.get('resourceVersion') || query.get('resourceVersionMatch')) return false;
    if (t.rv < cache.store.oldest) {
      sendText(out, 410, statusJson(410, 'Expired', EXPIRED_CONTINUE));
      return true;
    }
    point = { at: 'exact', rv: t.rv };
    start = t.start;
  } else {
    if (!query.get('resourceVersion') && limit > 0 && limit <= SMALL_CONSISTENT_READ) return false;
    point = await readPoint(cache, query, 'list');
  }
  if (!point) return false;
  const store = cache.store;
  let rv: number;
  let all: CachedObject[];
  try {
    rv = point.at === 'current' ? store.rv : point.rv;
    all = point.at === 'current' ? store.current() : store.snapshotAt(point.rv);
  } catch (err) {
    if (err instanceof TooOldError) return false;
    throw err;
  }
  const items: string[] = [];
  let last = '';
  let more = false;
  let remaining = 0;
  for (const obj of all) {
    if (start && obj.key <= start) continue;
    if (!match(obj)) continue;
    if (limit > 0 && items.length === limit) {
      more = true;
      if (!everything) break;
      remaining++;
      continue;
    }
    items.push(obj.json);
    last = obj.key;
  }
  const r = cache.resource;
  let meta = `"resourceVersion":"${rv}"`;
  if (more) meta += `,"continue":"${encodeContinue({ rv, start: last })}"${everything ? `,"remainingItemCount":${remaining}` : ''}`;
  sendText(out, 200, `{"kind":"${r.kind}List","apiVersion":"${apiVersionOf(r)}","metadata":{${meta}},"items":[${items.join(',')}]}`);
  return true;
}

async function serveGet(cache: ServedResource, req: CacheRequest, out: Responder): Promise<boolean> {
  if (!req.query.get('resourceVersion')) return false; // consistent: one object, see SMALL_CONSISTENT_READ
  const point = await readPoint(cache, req.query, 'get');
  if (!point) return false;
  const key = req.namespace ? `${req.namespace}/${req.name}` : req.name;
  let obj: CachedObject | undefined;
  try {
    obj = point.at === 'current' ? cache.store.objects.get(key) : cache.store.snapshotAt(point.rv).find((o) => o.key === key);
  } catch (err) {
    if (err instanceof TooOldError) return false;
    throw err;
  }
  const r = cache.resource;
  if (!obj) {
    const qualified = r.group ? `${r.resource}.${r.group}` : r.resource;
    sendText(out, 404, statusJson(404, 'NotFound', `${qualified} "${req.name}" not found`, { name: req.name, ...(r.group ? { group: r.group } : {}), kind: r.resource }));
    return true;
  }
  sendText(out, 200, objectText(r, obj));
  return true;
}

/** One client's watch on the store: the cacher's transitions for its selectors, bookmarks, timeout, bounded buffer. */
class CacheWatch implements StoreListener {
  private readonly timers: NodeJS.Timeout[] = [];
  private unsubscribe: (() => void) | undefined;
  private done = false;

  constructor(
    private readonly cache: ServedResource,
    private readonly match: Predicate,
    private readonly out: Responder,
  ) {}

  line(type: string, obj: CachedObject): string {
    return `{"type":"${type}","object":${objectText(this.cache.resource, obj)}}\n`;
  }

  bookmark(rv: number, initialEventsEnd = false): string {
    const r = this.cache.resource;
    const annotations = initialEventsEnd ? ',"annotations":{"k8s.io/initial-events-end":"true"}' : '';
    return `{"type":"BOOKMARK","object":{"kind":"${r.kind}","apiVersion":"${apiVersionOf(r)}","metadata":{"resourceVersion":"${rv}"${annotations}}}}\n`;
  }

  /** The event a client with these selectors sees for one change, if any (cacher's convertToWatchEvent). */
  transition(e: CacheEvent): string | undefined {
    const now = e.type !== 'DELETED' && this.match(e.object);
    const before = e.prev !== undefined && this.match(e.prev);
    if (now && before) return this.line('MODIFIED', e.object);
    if (now) return this.line('ADDED', e.object);
    if (before) return this.line('DELETED', e.type === 'DELETED' ? e.object : atRevision(e.prev!, e.rv));
    return undefined;
  }

  onEvents(events: readonly CacheEvent[]): void {
    let text = '';
    for (const e of events) text += this.transition(e) ?? '';
    if (text) this.send(text);
  }

  send(text: string): void {
    if (this.done) return;
    this.out.write(text);
    if (this.out.bufferedBytes > this.cache.maxBufferedBytes) {
      // A slow client must not hold the others or poolview's memory: it re-watches from its last revision.
      this.cache.onSlowClientCut();
      this.stop();
    }
  }

  /** Registers synchronously after `initial` is computed: no change can fall between the two. */
  start(initial: string, allowBookmarks: boolean, timeoutSeconds: number): void {
    this.out.begin(200, { ...JSON_HEADERS, 'transfer-encoding': 'chunked' });
    this.unsubscribe = this.cache.store.subscribe(this);
    this.out.onClose(() => this.stop());
    if (initial) this.send(initial);
    if (allowBookmarks && this.cache.bookmarkIntervalMs > 0) {
      this.timers.push(setInterval(() => this.send(this.bookmark(this.cache.store.rv)), this.cache.bookmarkIntervalMs));
    }
    if (timeoutSeconds > 0) this.timers.push(setTimeout(() => this.stop(), timeoutSeconds * 1000));
  }

  stop(): void {
    if (this.done) return;
    this.done = true;
    this.unsubscribe?.();
    for (const t of this.timers) clearTimeout(t);
    this.out.end();
  }
}

async function serveWatch(cache: ServedResource, req: CacheRequest, match: Predicate, out: Responder): Promise<boolean> {
  const { query } = req;
  const rv = query.get('resourceVersion') ?? '';
  const rvMatch = query.get('resourceVersionMatch') ?? '';
  const sendInitialEvents = query.get('sendInitialEvents');
  const allowBookmarks = query.get('allowWatchBookmarks') === 'true';
  // timeoutSeconds wins over the request timeout `timeout` (client-go sends both), as in the apiserver.
  const timeoutSeconds = query.has('timeoutSeconds') ? Number(query.get('timeoutSeconds')) : goDurationSeconds(query.get('timeout') ?? '');
  if (!Number.isFinite(timeoutSeconds) || timeoutSeconds < 0) return false;
  if (sendInitialEvents !== null && sendInitialEvents !== 'true' && sendInitialEvents !== 'false') return false;
  // Validation failures (sendInitialEvents without NotOlderThan, ...) are the apiserver's to word.
  if (sendInitialEvents !== null ? rvMatch !== 'NotOlderThan' : rvMatch !== '') return false;
  if (rv !== '' && rv !== '0' && !/^[1-9]\d*$/.test(rv)) return false;
  const store = cache.store;
  const streaming = sendInitialEvents === 'true';
  // rv unset (and rv unset with initial events) starts from a consistent state, as the apiserver's does.
  if (rv === '' && !(await cache.fresh())) return false;
  if (rv !== '' && rv !== '0' && !(await store.waitFor(Number(rv), WAIT_FOR_REVISION_MS))) return false;

  const watch = new CacheWatch(cache, match, out);
  let initial = '';
  if (streaming || rv === '' || (rv === '0' && sendInitialEvents === null)) {
    for (const obj of store.current()) if (match(obj)) initial += watch.line('ADDED', obj);
    if (streaming && allowBookmarks) initial += watch.bookmark(store.rv, true);
  } else if (rv !== '0') {
    try {
      for (const e of store.eventsAfter(Number(rv))) initial += watch.transition(e) ?? '';
    } catch (err) {
      if (!(err instanceof TooOldError)) throw err;
      out.begin(200, { ...JSON_HEADERS, 'transfer-encoding': 'chunked' });
      out.write(`{"type":"ERROR","object":${statusJson(410, 'Expired', `too old resource version: ${rv} (${err.oldest})`)}}\n`);
      out.end();
      return true;
    }
  }
  watch.start(initial, allowBookmarks, timeoutSeconds);
  return true;
}

/** A Go duration (`7m7s`, `30s`, `1h`) in seconds; NaN when it does not parse, 0 for "". */
function goDurationSeconds(text: string): number {
  if (text === '') return 0;
  if (!/^(\d+(\.\d+)?(h|m|s|ms))+$/.test(text)) return NaN;
  const unit: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 0.001 };
  let seconds = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s)/g)) seconds += Number(m[1]) * unit[m[2]];
  return seconds;
}

/** Serves the request from the cache; false (nothing written) when it must go upstream. */
export async function serveFromCache(cache: ServedResource, req: CacheRequest, out: Responder): Promise<boolean> {
  if (!servableQuery(req.query)) return false;
  const selected = requestPredicate(req.namespace, req.query.get('labelSelector'), req.query.get('fieldSelector'), Object.keys(cache.resource.fields));
  if (!selected) return false;
  if (req.verb === 'get') return serveGet(cache, req, out);
  if (req.verb === 'list') return serveList(cache, req, selected.match, selected.everything, out);
  return serveWatch(cache, req, selected.match, out);
}
