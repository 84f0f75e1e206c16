// One watch cache per cached resource, started on first use, and the Upstream whose two dispatchers
// read through it. Wiring: startPoolview wraps its upstream once; everything downstream is unchanged.
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import type { Registry } from 'prom-client';
import type { Upstream } from '../types.js';
import { createCacheMetrics, type CacheMetrics } from '../metrics.js';
import { AccessReviews } from './authorization.js';
import { CacheReflector } from './reflector.js';
import { Freshness } from './freshness.js';
import { WatchCacheStore } from './store.js';
import { cachedResource } from './resources.js';
import { cacheInterceptor } from './interceptor.js';
import type { ServedResource } from './serve.js';

export interface WatchCacheOptions {
  /** Events kept per resource (--watch-cache-history). */
  history: number;
  /** --authorization-cache-ttl, in ms. */
  authorizationTtlMs: number;
  /** Progress bookmarks to watches that allow them (default 60 s, as the apiserver). */
  bookmarkIntervalMs?: number;
  /** Unread bytes a watch may hold before it is ended (default 16 MiB). */
  maxBufferedBytes?: number;
  /** How long a first request waits for the first LIST of its resource (default 10 s). */
  syncTimeoutMs?: number;
  log: Logger;
  registry: Registry;
}

interface Entry {
  served: ServedResource;
  reflector: CacheReflector;
}

export class WatchCaches {
  private readonly caches = new Map<string, Entry>();
  private readonly metrics: CacheMetrics;
  private readonly reviews: AccessReviews;
  private readonly wrapped = new WeakMap<Dispatcher, Dispatcher>();

  constructor(
    private readonly upstream: Upstream,
    private readonly opts: WatchCacheOptions,
  ) {
    this.metrics = createCacheMetrics(opts.registry);
    this.reviews = new AccessReviews(upstream, opts.authorizationTtlMs);
    this.metrics.setSource(() => [...this.caches.values()].map((e) => ({ resource: e.served.resource.resource, rv: e.served.store.rv, history: e.served.store.historySize })));
  }

  /** The cache of a resource once it has listed; undefined if it does not in time (the request goes upstream). */
  async cacheFor(group: string, version: string, resource: string): Promise<ServedResource | undefined> {
    const def = cachedResource(group, version, resource);
    if (!def) return undefined;
    let entry = this.caches.get(def.path);
    if (!entry) {
      const store = new WatchCacheStore(this.opts.history);
      const name = def.resource;
      const reflector = new CacheReflector(def, store, this.upstream, this.opts.log, {
        bytes: (n) => this.metrics.upstreamBytes.inc({ resource: name }, n),
        events: (n) => this.metrics.upstreamEvents.inc({ resource: name }, n),
      });
      const freshness = new Freshness(reflector, this.opts.log);
      entry = {
        reflector,
        served: {
          resource: def,
          store,
          fresh: () => freshness.ensure(),
          bookmarkIntervalMs: this.opts.bookmarkIntervalMs ?? 60_000,
          maxBufferedBytes: this.opts.maxBufferedBytes ?? 16 * 1024 * 1024,
          onSlowClientCut: () => this.metrics.slowClientsCut.inc({ resource: name }),
        },
      };
      this.caches.set(def.path, entry);
    }
    let timer: NodeJS.Timeout | undefined;
    const synced = await Promise.race([
      entry.reflector.start().then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), this.opts.syncTimeoutMs ?? 10_000))),
    ]);
    clearTimeout(timer);
    return synced ? entry.served : undefined;
  }

  private wrap(dispatcher: Dispatcher, own: boolean): Dispatcher {
    let composed = this.wrapped.get(dispatcher);
    if (!composed) {
      composed = dispatcher.compose(
        cacheInterceptor({
          cacheFor: (g, v, r) => this.cacheFor(g, v, r),
          reviews: own ? undefined : this.reviews,
          basePath: this.upstream.url.pathname.replace(/\/$/, ''),
          served: (resource, verb) => this.metrics.clientsServed.inc({ resource, verb }),
          // The path only: queries carry no credentials, headers do.
          forwarded: (path, why) => this.opts.log.debug({ path, own }, `cache: ${why}; sent upstream`),
          onError: (err) => this.opts.log.warn({ err: err.message }, 'cache: could not serve a request; sent upstream'),
        }),
      );
      this.wrapped.set(dispatcher, composed);
    }
    return composed;
  }

  /** The same upstream, its dispatchers reading through the cache (credential rotation keeps working). */
  upstreamThroughCache(): Upstream {
    const caches = this;
    return new Proxy(this.upstream, {
      get(target, key) {
        if (key === 'clientDispatcher') return caches.wrap(target.clientDispatcher, false);
        if (key === 'ownDispatcher') return caches.wrap(target.ownDispatcher, true);
        const value = Reflect.get(target, key) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  }

  close(): void {
    for (const e of this.caches.values()) e.reflector.stop();
  }
}
