// Consistent reads (resourceVersion unset) from the cache: served only once the cache has caught up
// with the cluster's current revision.
//
// Why this is correct: a LIST ?limit=1 started after the client's request returns R, the revision
// of the whole cluster at some moment after the request began. The cache state at any rv ≥ R
// contains every write the client could have observed before asking, which is what a consistent
// read promises. A quiet resource's own watch does not move past R by itself (no events of this
// resource; the apiserver sends progress bookmarks about once a minute), so a second, short watch
// from the cache's revision S asks the apiserver: it replays every event after S, then — 2 s before
// its timeoutSeconds — sends a BOOKMARK at its watch cache's revision B (which the limit=1 read
// above brought to ≥ R, as consistent reads from the apiserver's cache wait for etcd's revision).
// A bookmark with no event before it means no object of this resource changed in (S, B]: the
// state at S is exact at B, and the cache may advance to B. If events came, the main watch
// delivers them too; we wait for it. Concurrent reads share one check; one that arrives while a
// check is in flight waits for the next (its R must be read after it began).
//
// Measured on kube-apiserver v1.35: that bookmark comes 0.7–1.9 s into the probe (the cacher
// sends it 2 s before the deadline, bucketed per second; timeoutSeconds=2 gets none), and is at R.
// So a consistent read of a quiet resource costs about a second: the price of one stream.
import type { Logger } from 'pino';
import { jsonLines } from '../json-lines.js';
import { readAll } from '../upstream-body.js';
import type { CacheReflector } from './reflector.js';

/** The longest a consistent read waits for freshness before it goes upstream unchanged. */
export const FRESHNESS_TIMEOUT_MS = 5_000;

export class Freshness {
  private inFlight: Promise<boolean> | undefined;
  private queued: Promise<boolean> | undefined;

  constructor(
    private readonly reflector: CacheReflector,
    private readonly log: Logger,
  ) {}

  /** Resolves true once the cache holds everything written before this call, false if that cannot be shown in time. */
  ensure(): Promise<boolean> {
    if (this.queued) return this.queued;
    if (!this.inFlight) return this.begin();
    this.queued = this.inFlight.then(() => {
      this.queued = undefined;
      return this.begin();
    });
    return this.queued;
  }

  /** The cluster's current revision, from a one-item consistent LIST; 0 when it cannot be read. */
  private async currentRevision(signal: AbortSignal): Promise<number> {
    const head = await this.reflector.get({ limit: '1' }, signal);
    const text = await readAll(head.body, 1024 * 1024);
    if (head.statusCode !== 200) return 0;
    return Number((JSON.parse(text) as { metadata?: { resourceVersion?: string } }).metadata?.resourceVersion) || 0;
  }

  private begin(): Promise<boolean> {
    const check = this.check().catch((err: Error) => {
      this.log.debug({ resource: this.reflector.resource.resource, err: err.message }, 'cache: freshness check failed');
      return false;
    });
    this.inFlight = check.finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async check(): Promise<boolean> {
    const store = this.reflector.store;
    const deadline = Date.now() + FRESHNESS_TIMEOUT_MS;
    const signal = AbortSignal.timeout(FRESHNESS_TIMEOUT_MS);
    const current = await this.currentRevision(signal);
    if (!current) return false;
    if (store.rv >= current) return true;

    const from = store.rv;
    const probe = new AbortController();
    const stop = () => probe.abort();
    signal.addEventListener('abort', stop);
    try {
      const res = await this.reflector.get({ watch: 'true', resourceVersion: String(from), allowWatchBookmarks: 'true', timeoutSeconds: '3' }, probe.signal);
      if (res.statusCode === 200) {
        for await (const line of jsonLines(res.body)) {
          const event = JSON.parse(line) as { type: string; object: { metadata?: { resourceVersion?: string } } };
          if (event.type !== 'BOOKMARK') break; // a change: the main watch brings it
          const at = Number(event.object.metadata?.resourceVersion);
          if (at >= current) {
            store.advance(at);
            return true;
          }
        }
      } else res.body.resume();
    } catch (err) {
      if (!probe.signal.aborted) throw err;
    } finally {
      signal.removeEventListener('abort', stop);
      probe.abort();
    }
    return store.waitFor(current, Math.max(0, deadline - Date.now()));
  }
}
