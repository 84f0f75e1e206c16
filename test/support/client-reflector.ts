// A client-go style reflector for tests, checking the view contract (docs/design.md rules 2-5) on everything it receives:
// LIST (or a streaming list), WATCH from the list's resourceVersion, re-WATCH from the last one
// seen, re-LIST on 410 Expired. Violations are collected, not thrown, so a model test can report
// them with its seed.
import { request } from 'undici';

export interface Obj {
  kind?: string;
  apiVersion?: string;
  metadata: { name?: string; namespace?: string; resourceVersion?: string; annotations?: Record<string, string> };
  [k: string]: unknown;
}

export interface ClientReflectorOptions {
  baseUrl: string;
  path: string; // collection path, e.g. /api/v1/services
  userAgent: string;
  token?: string;
  mode: 'classic' | 'watchlist';
  /** Random watch timeouts make routine re-watches frequent. */
  timeoutSeconds?: () => number;
  /** Told of every watch event the client applies (after the informer's checks). */
  onEvent?: (event: ReceivedEvent) => void;
  /** Whether to cut the watch right after this event and resume from its resourceVersion (view contract (iii)). */
  resumeAfter?: (event: ReceivedEvent) => boolean;
}

/** A watch cut right after an event and resumed from its resourceVersion: was it answered 410, and when. */
export interface Resume {
  event: ReceivedEvent;
  receivedAt: number;
  expired?: boolean;
  answeredAt?: number;
}

/** A watch event as the client received it, with what it held for that object before. */
export interface ReceivedEvent {
  type: string;
  key: string;
  resourceVersion: string;
  /** The resourceVersion the client held for the object, if any. */
  heldResourceVersion?: string;
  /** Whether the event changed the object's content in the client's cache. */
  contentChanged: boolean;
  /** Whether the next line the connection delivered is past the next revision (false when none came yet). */
  lastAtRevision: boolean;
}

const key = (o: Obj) => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
const rvOf = (o: Obj) => Number(o.metadata.resourceVersion ?? 0);
function content(o: Obj): string {
  const { resourceVersion: _rv, ...meta } = o.metadata;
  return JSON.stringify({ ...o, kind: undefined, apiVersion: undefined, metadata: meta });
}

export class ClientReflector {
  readonly cache = new Map<string, Obj>();
  readonly violations: string[] = [];
  lastSync = '';
  relists = 0;
  rewatches = 0;
  /** Watches resumed right after an event (resumeAfter), and whether poolview answered 410 Expired. */
  readonly resumes: Resume[] = [];
  private probe: Resume | undefined;

  /** Whether a watch cut by resumeAfter is not answered yet. */
  get resuming(): boolean {
    return this.resumes.some((r) => r.expired === undefined);
  }
  private abort = new AbortController();
  private stopped = false;
  private running: Promise<void> | undefined;

  constructor(private readonly opts: ClientReflectorOptions) {}

  start(): void {
    this.running = this.loop();
  }

  /** Cuts the current connection, as a network blip would; the reflector resumes on its own. */
  disconnect(): void {
    this.abort.abort();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await this.running;
  }

  /** Recent deliveries per key, shown with a violation to tell how the client got there. */
  private readonly history = new Map<string, string[]>();
  private stream = 0;

  private note(k: string, what: string): void {
    const h = this.history.get(k) ?? [];
    h.push(`#${this.stream} ${what}`);
    if (h.length > 8) h.shift();
    this.history.set(k, h);
  }

  private violation(msg: string, k?: string): void {
    const trail = k ? `\n    history of ${k}: ${(this.history.get(k) ?? []).join(' | ')}` : '';
    if (this.violations.length < 50) this.violations.push(`${this.opts.userAgent} ${this.opts.path}: ${msg}${trail}`);
  }

  private url(query: Record<string, string>): string {
    const u = new URL(this.opts.path, this.opts.baseUrl);
    for (const [k, v] of Object.entries(query)) if (v !== '') u.searchParams.set(k, v);
    return u.toString();
  }

  private async get(query: Record<string, string>) {
    this.abort = new AbortController();
    this.stream++;
    return request(this.url(query), {
      headers: {
        'user-agent': this.opts.userAgent,
        accept: 'application/json',
        ...(this.opts.token ? { authorization: `Bearer ${this.opts.token}` } : {}),
      },
      signal: this.abort.signal,
    });
  }

  /**
   * Replace as client-go's shared informer does: an item with the resourceVersion the client holds
   * is a resync its handlers never see, so the handlers' view (this cache) keeps the old content.
   */
  private replace(items: Obj[], rv: string): void {
    const next = new Map(items.map((o) => [key(o), o]));
    for (const [k, o] of next) {
      const old = this.cache.get(k);
      this.note(k, `list@${rv} item rv ${o.metadata.resourceVersion} ${contentHash(o)}`);
      if (old && old.metadata.resourceVersion === o.metadata.resourceVersion && content(old) !== content(o)) {
        this.violation(`re-list changed ${k} without a new resourceVersion (${o.metadata.resourceVersion})`, k);
        next.set(k, old);
      }
    }
    this.cache.clear();
    for (const [k, o] of next) this.cache.set(k, o);
    this.lastSync = rv;
  }

  private async loop(): Promise<void> {
    let needList = true;
    let listRv = '0';
    while (!this.stopped) {
      try {
        if (this.opts.mode === 'watchlist' && needList) {
          needList = await this.watch(true);
          continue;
        }
        if (needList) {
          this.relists++;
          const res = await this.get({ resourceVersion: listRv });
          const body = (await res.body.json()) as { items: Obj[]; metadata: { resourceVersion: string }; code?: number };
          if (res.statusCode === 410) {
            listRv = '';
            continue;
          }
          if (res.statusCode !== 200) throw new Error(`list: HTTP ${res.statusCode} ${JSON.stringify(body).slice(0, 200)}`);
          this.replace(body.items, body.metadata.resourceVersion);
          needList = false;
        }
        this.rewatches++;
        needList = await this.watch(false);
        if (needList) listRv = this.lastSync || '0';
      } catch (err) {
        if (this.stopped) return;
        if ((err as Error).name !== 'AbortError' && !/aborted|other side closed|ECONNRESET|terminated/i.test(String(err))) {
          this.violation(`unexpected error: ${(err as Error).message}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  /** One watch; returns true when the reflector must re-list. */
  private async watch(initial: boolean): Promise<boolean> {
    const query: Record<string, string> = {
      watch: 'true',
      allowWatchBookmarks: 'true',
      resourceVersion: this.lastSync,
      timeoutSeconds: String(this.opts.timeoutSeconds?.() ?? 30),
    };
    if (initial) Object.assign(query, { sendInitialEvents: 'true', resourceVersionMatch: 'NotOlderThan' });
    const probe = this.probe;
    this.probe = undefined;
    const settle = (expired: boolean) => {
      if (!probe || probe.expired !== undefined) return;
      probe.expired = expired;
      probe.answeredAt = performance.now();
    };
    const res = await this.get(query);
    if (res.statusCode !== 200) {
      const text = await res.body.text();
      settle(res.statusCode === 410);
      if (res.statusCode === 410) return true;
      throw new Error(`watch: HTTP ${res.statusCode} ${text.slice(0, 200)}`);
    }
    const temp = initial ? new Map<string, Obj>() : undefined;
    let last = Number(this.lastSync || 0);
    let pending = '';
    for await (const chunk of res.body) {
      pending += chunk.toString();
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (!line.trim()) continue;
        const event = JSON.parse(line) as { type: string; object: Obj & { code?: number } };
        if (event.type === 'ERROR') {
          settle(event.object.code === 410);
          // Expired: as client-go, re-list from the last resourceVersion seen (NotOlderThan), and
          // only if that list is expired too from a consistent read (the loop's 410 branch).
          if (event.object.code === 410) return true;
          throw new Error(`watch ERROR ${JSON.stringify(event.object)}`);
        }
        settle(false);
        const obj = event.object;
        const rv = rvOf(obj);
        if (temp) {
          if (event.type === 'BOOKMARK' && obj.metadata.annotations?.['k8s.io/initial-events-end'] === 'true') {
            this.replace([...temp.values()], obj.metadata.resourceVersion!);
            return this.watchRest(res.body, pending);
          }
          if (event.type === 'ADDED' || event.type === 'MODIFIED') temp.set(key(obj), obj);
          else if (event.type === 'DELETED') temp.delete(key(obj));
          continue;
        }
        if (rv < last) this.violation(`resourceVersion went backwards: ${rv} after ${last}`);
        last = Math.max(last, rv);
        if (this.apply(event.type, obj, lastAt(pending, obj))) return false;
      }
    }
    settle(false);
    return false;
  }

  private async watchRest(body: AsyncIterable<Buffer>, pending: string): Promise<boolean> {
    let last = Number(this.lastSync || 0);
    const handle = (line: string): boolean | undefined => {
      if (!line.trim()) return undefined;
      const event = JSON.parse(line) as { type: string; object: Obj & { code?: number } };
      if (event.type === 'ERROR') {
        if (event.object.code === 410) return true;
        throw new Error(`watch ERROR ${JSON.stringify(event.object)}`);
      }
      const rv = rvOf(event.object);
      if (rv < last) this.violation(`resourceVersion went backwards: ${rv} after ${last}`);
      last = Math.max(last, rv);
      return this.apply(event.type, event.object, lastAt(pending, event.object)) ? false : undefined;
    };
    const drain = (): boolean | undefined => {
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        const r = handle(line);
        if (r !== undefined) return r;
      }
      return undefined;
    };
    const first = drain();
    if (first !== undefined) return first;
    for await (const chunk of body) {
      pending += chunk.toString();
      const r = drain();
      if (r !== undefined) return r;
    }
    return false;
  }

  /** Applies one watch event; returns true when the watch is cut to resume from it (resumeAfter). */
  private apply(type: string, obj: Obj, lastAtRevision = true): boolean {
    const k = key(obj);
    const held = this.cache.get(k);
    if (type !== 'BOOKMARK') this.note(k, `${type} rv ${obj.metadata.resourceVersion} ${contentHash(obj)}`);
    switch (type) {
      case 'ADDED':
        if (held) this.violation(`ADDED for ${k}, which the client holds`, k);
        this.cache.set(k, obj);
        break;
      case 'MODIFIED':
        if (!held) this.violation(`MODIFIED for ${k}, which the client does not hold`, k);
        else if (held.metadata.resourceVersion === obj.metadata.resourceVersion) {
          // A shared informer takes an update at the held resourceVersion for a resync: its handlers
          // (kube-proxy) never see it, so a content change hidden that way leaves this cache stale.
          if (content(held) !== content(obj)) this.violation(`MODIFIED ${k} changed content at the held resourceVersion ${obj.metadata.resourceVersion}`, k);
          break;
        }
        this.cache.set(k, obj);
        break;
      case 'DELETED':
        if (!held) this.violation(`DELETED for ${k}, which the client does not hold`, k);
        else if (content(held) !== content(obj)) {
          this.violation(`DELETED ${k} does not carry the version the client saw:\n  held ${content(held)}\n  sent ${content(obj)}`, k);
        }
        this.cache.delete(k);
        break;
      case 'BOOKMARK':
        break;
      default:
        this.violation(`unknown event type ${type}`);
    }
    this.lastSync = obj.metadata.resourceVersion ?? this.lastSync;
    if (type === 'BOOKMARK') return false;
    const event: ReceivedEvent = {
      type,
      key: k,
      resourceVersion: obj.metadata.resourceVersion ?? '',
      heldResourceVersion: held?.metadata.resourceVersion,
      contentChanged: !held || type === 'DELETED' || content(held) !== content(obj),
      lastAtRevision,
    };
    this.opts.onEvent?.(event);
    if (!this.opts.resumeAfter?.(event)) return false;
    this.probe = { event, receivedAt: performance.now() };
    this.resumes.push(this.probe);
    this.abort.abort();
    return true;
  }
}

/**
 * Whether the next whole line received is past the next revision (the object's resourceVersion
 * comes first in its metadata); false when none came yet. poolview sends a scope change's
 * transitions but the last one revision below the change's, so that a client cut off among them
 * re-lists: the last one is followed by an upstream event past its revision.
 */
function lastAt(pending: string, obj: Obj): boolean {
  const nl = pending.indexOf('\n');
  return nl >= 0 && Number(/"resourceVersion":"(\d+)"/.exec(pending.slice(0, nl))?.[1]) > rvOf(obj) + 1;
}

/** A short fingerprint of an object's content, for histories. */
function contentHash(o: Obj): string {
  let h = 0;
  for (const ch of content(o)) h = (Math.imul(h, 31) + ch.charCodeAt(0)) | 0;
  return (h >>> 0).toString(16).slice(0, 6);
}

export { content as contentOf, key as keyOf };
