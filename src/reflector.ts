// A small LIST+WATCH client for poolview's own caches (the scope sources), with poolview's own
// credentials. It follows client-go's reflector: LIST, WATCH from the list's resourceVersion,
// re-WATCH from the last one seen, re-LIST on 410 Expired, back off on errors.
import { request } from 'undici';
import type { Logger } from 'pino';
import type { KubeObject } from '../filters/types.js';
import type { Upstream } from './types.js';
import type { Revisions } from './revisions.js';
import { jsonLines } from './json-lines.js';
import { decodedBody, readAll, UPSTREAM_BODY_IDLE_MS, UPSTREAM_HEADERS_TIMEOUT_MS } from './upstream-body.js';

export type ReflectorEvent = 'added' | 'modified' | 'deleted';
export type ReflectorHandler = (type: ReflectorEvent, obj: KubeObject, old: KubeObject | undefined) => void;

export class NotServedError extends Error {}

export function objectKey(obj: KubeObject): string {
  const { namespace, name } = obj.metadata;
  return namespace ? `${namespace}/${name}` : `${name}`;
}

/** Objects per LIST page. */
const LIST_PAGE_SIZE = 500;

/** Enough to name an object and, by its labels, its Service. */
export function keyOnly(obj: KubeObject): KubeObject {
  const { name, namespace, resourceVersion, labels } = obj.metadata;
  return { metadata: { name, namespace, resourceVersion, labels } };
}

/** The type and metadata without managedFields: all a decision reads of a Service (its annotations). */
export function metadataOnly(obj: KubeObject): KubeObject {
  const { name, namespace, resourceVersion, labels, annotations } = obj.metadata;
  return { kind: obj.kind, apiVersion: obj.apiVersion, metadata: { name, namespace, resourceVersion, labels, annotations } };
}

/** managedFields are often most of an object's size, and no decision reads them. */
function withoutManagedFields(obj: KubeObject): KubeObject {
  if (obj.metadata.managedFields === undefined) return obj;
  const { managedFields: _dropped, ...metadata } = obj.metadata;
  return { ...obj, metadata };
}

export interface ReflectorOptions {
  upstream: Upstream;
  /** Collection path, e.g. /api/v1/services */
  path: string;
  /** Extra query, e.g. { fieldSelector: 'metadata.name=x' } */
  query?: Record<string, string>;
  revisions: Revisions;
  log: Logger;
  onEvent: ReflectorHandler;
  /** Accept header (default application/json); e.g. metadata only, as PartialObjectMetadata. */
  accept?: string;
  /** What the store keeps of each object (default: all but managedFields); handlers get it whole. */
  keep?: (obj: KubeObject) => KubeObject;
}

export class Reflector {
  readonly store = new Map<string, KubeObject>();
  private lastRv = '';
  private stopped = false;
  private abort = new AbortController();
  private syncedOnce = false;
  private backoffMs = 0;
  lastError: string | undefined;

  /** The resource it reads (the path's last segment), for Revisions.highFor. */
  private readonly resource: string;

  constructor(private readonly opts: ReflectorOptions) {
    this.resource = opts.path.split('/').pop()!;
  }

  get synced(): boolean {
    return this.syncedOnce;
  }

  /** Lists once to check the resource is served; throws NotServedError on 404. Then runs in the background. */
  async start(): Promise<void> {
    await this.list();
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
  }

  private url(query: Record<string, string>): string {
    const u = new URL(this.opts.path, this.opts.upstream.url);
    for (const [k, v] of Object.entries({ ...this.opts.query, ...query })) u.searchParams.set(k, v);
    return u.toString();
  }

  private async get(query: Record<string, string>) {
    const watch = query.watch === 'true';
    return request(this.url(query), {
      dispatcher: this.opts.upstream.ownDispatcher,
      headers: { accept: this.opts.accept ?? 'application/json', 'accept-encoding': watch ? 'identity' : 'gzip', 'user-agent': 'poolview', ...this.opts.upstream.ownHeaders() },
      signal: this.abort.signal,
      // A LIST that hangs fails and is retried with backoff; a quiet watch is bounded by TCP keepalive.
      headersTimeout: UPSTREAM_HEADERS_TIMEOUT_MS,
      bodyTimeout: watch ? 0 : UPSTREAM_BODY_IDLE_MS,
    });
  }

  private async list(): Promise<void> {
    // In pages, as client-go's reflector lists: a page's objects are garbage before the next one
    // arrives, so memory never holds a whole large list at once.
    const seen = new Set<string>();
    let rv = '';
    for (let next = ''; ; ) {
      const res = await this.get({ limit: String(LIST_PAGE_SIZE), ...(next ? { continue: next } : {}) });
      const text = await readAll(decodedBody(res.headers, res.body));
      if (res.statusCode === 404) throw new NotServedError(`${this.opts.path} is not served`);
      if (res.statusCode === 410 && next) {
        // The continue token expired (a compaction meanwhile): start over.
        next = '';
        seen.clear();
        continue;
      }
      if (res.statusCode !== 200) throw new Error(`list ${this.opts.path}: HTTP ${res.statusCode}: ${text.slice(0, 200)}`);
      const page = JSON.parse(text) as { metadata: { resourceVersion: string; continue?: string }; items: KubeObject[]; kind: string };
      const itemKind = page.kind.replace(/List$/, '');
      for (const item of page.items) {
        item.kind ??= itemKind;
        const key = objectKey(item);
        seen.add(key);
        this.apply(this.store.has(key) ? 'modified' : 'added', item);
      }
      rv = page.metadata.resourceVersion;
      next = page.metadata.continue ?? '';
      if (!next) break;
    }
    for (const [key, obj] of this.store) if (!seen.has(key)) this.apply('deleted', obj);
    this.lastRv = rv;
    this.opts.revisions.observe(this.lastRv, this.resource);
    this.syncedOnce = true;
  }

  private apply(type: ReflectorEvent, obj: KubeObject): void {
    const key = objectKey(obj);
    const old = this.store.get(key);
    if (type === 'deleted') this.store.delete(key);
    else this.store.set(key, (this.opts.keep ?? withoutManagedFields)(obj));
    this.opts.onEvent(type, obj, old);
  }

  private async run(): Promise<void> {
    let needList = false;
    while (!this.stopped) {
      try {
        if (needList) await this.list();
        needList = await this.watch();
      } catch (err) {
        if (this.stopped) return;
        this.lastError = (err as Error).message;
        this.backoffMs = Math.min(Math.max(this.backoffMs * 2, 500), 30_000);
        this.opts.log.warn({ path: this.opts.path, err: this.lastError, retryMs: this.backoffMs }, 'scope source watch failed');
        await new Promise((r) => setTimeout(r, this.backoffMs));
        needList = true;
      }
    }
  }

  /** One watch; returns true when a re-list is needed (410 Expired). */
  private async watch(): Promise<boolean> {
    const timeout = 300 + Math.floor(Math.random() * 300);
    const res = await this.get({
      watch: 'true',
      resourceVersion: this.lastRv,
      allowWatchBookmarks: 'true',
      timeoutSeconds: String(timeout),
    });
    if (res.statusCode === 410) {
      await res.body.dump();
      return true;
    }
    if (res.statusCode !== 200) {
      const text = await res.body.text();
      throw new Error(`watch ${this.opts.path}: HTTP ${res.statusCode}: ${text.slice(0, 200)}`);
    }
    // Connected: a later drop is a fresh failure, not one more in a row.
    this.backoffMs = 0;
    this.lastError = undefined;
    for await (const line of jsonLines(res.body)) {
      const event = JSON.parse(line) as { type: string; object: KubeObject & { code?: number } };
      if (event.type === 'ERROR') {
        if (event.object.code === 410) return true;
        throw new Error(`watch ${this.opts.path}: ${JSON.stringify(event.object).slice(0, 200)}`);
      }
      const rv = event.object.metadata?.resourceVersion;
      if (rv) {
        this.lastRv = rv;
        this.opts.revisions.observe(rv, this.resource);
      }
      if (event.type === 'ADDED') this.apply(this.store.has(objectKey(event.object)) ? 'modified' : 'added', event.object);
      else if (event.type === 'MODIFIED') this.apply('modified', event.object);
      else if (event.type === 'DELETED') this.apply('deleted', event.object);
    }
    return false;
  }
}
