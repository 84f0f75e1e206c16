// One upstream LIST+WATCH per cached resource, with poolview's own credentials, feeding the store:
// LIST in pages (gzip), WATCH from the list's revision with bookmarks, re-WATCH from the last
// revision after a drop, re-LIST (diffed into events) after 410 Expired, backing off on errors.
import { request, type Dispatcher } from 'undici';
import type { Logger } from 'pino';
import type { Readable } from 'node:stream';
import type { Upstream } from '../types.js';
import { jsonLines } from '../json-lines.js';
import { decodedBody, readAll, UPSTREAM_BODY_IDLE_MS, UPSTREAM_HEADERS_TIMEOUT_MS } from '../upstream-body.js';
import { cachedObject, type CachedObject, type EventType, type WatchCacheStore } from './store.js';
import type { CachedResource } from './resources.js';

const LIST_PAGE_SIZE = 500;

export interface ReflectorHooks {
  /** Bytes received from the apiserver (as on the wire, before gunzip). */
  bytes(n: number): void;
  events(n: number): void;
}

/** Upstream 410 Expired: the revision is gone, list again. */
class ExpiredError extends Error {}

export class CacheReflector {
  private stopped = false;
  private readonly abort = new AbortController();
  private synced: Promise<void> | undefined;
  private backoffMs = 0;
  lastError: string | undefined;

  constructor(
    readonly resource: CachedResource,
    readonly store: WatchCacheStore,
    private readonly upstream: Upstream,
    private readonly log: Logger,
    private readonly hooks: ReflectorHooks,
  ) {}

  /** Starts on first use; resolves once the first LIST is in the store. */
  start(): Promise<void> {
    this.synced ??= new Promise((resolve) => void this.run(resolve));
    return this.synced;
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
  }

  /** A GET with poolview's own credentials, straight to the apiserver (never through the cache). */
  async get(query: Record<string, string>, signal: AbortSignal = this.abort.signal): Promise<{ statusCode: number; body: Readable }> {
    const url = new URL(this.upstream.url.pathname.replace(/\/$/, '') + this.resource.path, this.upstream.url);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    const watch = query.watch === 'true';
    const res = await request(url, {
      dispatcher: this.upstream.ownDispatcher as Dispatcher,
      headers: { accept: 'application/json', 'accept-encoding': watch ? 'identity' : 'gzip', 'user-agent': 'poolview', ...this.upstream.ownHeaders() },
      signal,
      headersTimeout: UPSTREAM_HEADERS_TIMEOUT_MS,
      bodyTimeout: watch ? 0 : UPSTREAM_BODY_IDLE_MS,
    });
    res.body.on('data', (chunk: Buffer) => this.hooks.bytes(chunk.length));
    return { statusCode: res.statusCode, body: decodedBody(res.headers, res.body) };
  }

  private async run(synced: () => void): Promise<void> {
    let needList = true;
    while (!this.stopped) {
      try {
        if (needList) {
          await this.list();
          synced();
          needList = false;
        }
        await this.watch();
      } catch (err) {
        if (this.stopped) return;
        if (err instanceof ExpiredError) needList = true;
        else {
          this.lastError = (err as Error).message;
          this.log.warn({ resource: this.resource.resource, err: this.lastError }, 'cache: upstream list/watch failed');
        }
        this.backoffMs = Math.min(Math.max(this.backoffMs * 2, 250), 30_000);
        await new Promise((r) => setTimeout(r, this.backoffMs * (0.75 + Math.random() / 2)));
      }
    }
  }

  private async list(): Promise<void> {
    // In pages, as client-go lists: one page at a time in memory, as text.
    const items: CachedObject[] = [];
    let rv = 0;
    for (let next = ''; ; ) {
      const res = await this.get({ limit: String(LIST_PAGE_SIZE), ...(next ? { continue: next } : {}) });
      const text = await readAll(res.body);
      if (res.statusCode === 410 && next) {
        next = ''; // the continue token expired (a compaction meanwhile): start over
        items.length = 0;
        continue;
      }
      if (res.statusCode !== 200) throw new Error(`list ${this.resource.path}: HTTP ${res.statusCode}: ${text.slice(0, 200)}`);
      const page = JSON.parse(text) as { metadata: { resourceVersion: string; continue?: string }; items: object[] };
      for (const item of page.items) items.push(cachedObject(item, this.resource.fields));
      rv = Number(page.metadata.resourceVersion);
      next = page.metadata.continue ?? '';
      if (!next) break;
    }
    this.store.replace(items, rv);
    this.hooks.events(items.length);
  }

  /** One upstream watch from the store's revision, until it ends; ExpiredError on 410. */
  private async watch(): Promise<void> {
    const res = await this.get({
      watch: 'true',
      resourceVersion: String(this.store.rv),
      allowWatchBookmarks: 'true',
      timeoutSeconds: String(300 + Math.floor(Math.random() * 300)),
    });
    if (res.statusCode === 410) {
      res.body.resume();
      throw new ExpiredError();
    }
    if (res.statusCode !== 200) throw new Error(`watch ${this.resource.path}: HTTP ${res.statusCode}: ${(await readAll(res.body)).slice(0, 200)}`);
    this.backoffMs = 0;
    this.lastError = undefined;
    for await (const line of jsonLines(res.body)) {
      const event = JSON.parse(line) as { type: string; object: { code?: number; metadata?: { resourceVersion?: string } } };
      if (event.type === 'ERROR') {
        if (event.object.code === 410) throw new ExpiredError();
        throw new Error(`watch ${this.resource.path}: ${line.slice(0, 200)}`);
      }
      this.hooks.events(1);
      if (event.type === 'BOOKMARK') this.store.advance(Number(event.object.metadata?.resourceVersion) || 0);
      else if (event.type === 'ADDED' || event.type === 'MODIFIED' || event.type === 'DELETED') this.store.apply(event.type as EventType, cachedObject(event.object, this.resource.fields));
    }
  }
}
