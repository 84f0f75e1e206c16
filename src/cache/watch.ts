// WATCH from the cache: the state or the history after a revision, then live changes, with the
// cacher's selector transitions, streaming lists' initial-events-end bookmark, progress bookmarks,
// timeoutSeconds and a bounded buffer per client.
import type { Predicate } from './selectors.js';
import { TooOldError, atRevision, type CacheEvent, type CachedObject, type StoreListener } from './store.js';
import { apiVersionOf } from './resources.js';
import type { CacheRequest, Responder, ServedResource } from './serve.js';
import { JSON_HEADERS, WAIT_FOR_REVISION_MS, objectText, statusJson } from './wire.js';

/** One client's watch on the store: the cacher's transitions for its selectors, bookmarks, timeout, bounded buffer. */
class CacheWatch implements StoreListener {
  private readonly timers: NodeJS.Timeout[] = [];
  private unsubscribe: (() => void) | undefined;
  private done = false;
  private allowBookmarks = false;

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

  /** Upstream progress passes on at once, as the apiserver's own bookmarks: views wait for it (scope changes). */
  onProgress(rv: number): void {
    if (this.allowBookmarks) this.send(this.bookmark(rv));
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
    this.allowBookmarks = allowBookmarks;
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

export async function serveWatch(cache: ServedResource, req: CacheRequest, match: Predicate, out: Responder): Promise<boolean> {
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
