// Answers LIST, GET and WATCH of a cached resource with the apiserver's semantics
// (staging/src/k8s.io/apiserver/pkg/storage/cacher): which revision a read is served at, paging,
// selectors, watches from the history with the cacher's selector transitions, streaming lists,
// bookmarks and timeouts (watches in watch.ts). Anything it cannot answer exactly returns false before writing a byte:
// the request then goes upstream unchanged.
import { requestPredicate, type Predicate } from './selectors.js';
import { TooOldError, type CachedObject, type WatchCacheStore } from './store.js';
import { apiVersionOf, type CachedResource } from './resources.js';
import { WAIT_FOR_REVISION_MS, objectText, sendText, statusJson } from './wire.js';
import { serveWatch } from './watch.js';

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

const KNOWN_PARAMS = new Set(['timeout', 'resourceVersion', 'resourceVersionMatch', 'limit', 'continue', 'labelSelector', 'fieldSelector', 'timeoutSeconds', 'allowWatchBookmarks', 'watch', 'sendInitialEvents']);

/** Whether the query has only parameters the cache serves exactly (pretty, timeout, ... go upstream). */
export function servableQuery(query: URLSearchParams): boolean {
  for (const key of query.keys()) if (!KNOWN_PARAMS.has(key)) return false;
  return true;
}

type ReadPoint = { at: 'current' } | { at: 'exact'; rv: number };

/** The revision a LIST or GET is served at, as the cacher decides it; undefined = go upstream. */
async function readPoint(cache: ServedResource, query: URLSearchParams, verb: 'get' | 'list'): Promise<ReadPoint | undefined> {
  // Watch-only parameters on a read are the apiserver's to refuse.
  if (query.has('sendInitialEvents')) return undefined;
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

const EXPIRED_CONTINUE =
  'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.';

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

/** Serves the request from the cache; false (nothing written) when it must go upstream. */
export async function serveFromCache(cache: ServedResource, req: CacheRequest, out: Responder): Promise<boolean> {
  if (!servableQuery(req.query)) return false;
  const selected = requestPredicate(req.namespace, req.query.get('labelSelector'), req.query.get('fieldSelector'), Object.keys(cache.resource.fields));
  if (!selected) return false;
  if (req.verb === 'get') return serveGet(cache, req, out);
  if (req.verb === 'list') return serveList(cache, req, selected.match, selected.everything, out);
  return serveWatch(cache, req, selected.match, out);
}
