// Filtered LIST and GET: the upstream JSON answer with out-of-view objects removed (LIST) or
// answered 404 (GET), transformed objects replaced, resourceVersions kept real.
import type { KubeObject } from '../../filters/types.js';
import { applyChain, type Filter, type Scope } from '../../filters/types.js';
import { statusObject } from '../status.js';
import type { InterceptContext } from '../types.js';
import { rvNumber, type Revisions } from '../revisions.js';
import { drained, getUpstream, negotiate, notFound, listSlots, readAll, relay, sendJson, sendJsonText, upstreamHeaders, type UpstreamResponse } from './http.js';
import type { ServerResponse } from 'node:http';
import { notOlderThan, toMetadata } from './objects.js';
import type { ViewRegistry } from './registry.js';

export interface ViewDeps {
  scope: Scope;
  revisions: Revisions;
  registry: ViewRegistry;
}

/** Who a view is for, asked afresh at each decision: targeting can change while a request runs. */
export interface ViewSubject {
  /** The filters that apply now. */
  chain(): readonly Filter[];
  /** Whether the component was ever targeted: only then can its view differ from upstream (marks of docs/design.md rule 5). */
  marked(): boolean;
  /** Whether scope changes produce transitions (feature gate ViewTransitions). */
  transitions(): boolean;
}

interface KubeList {
  kind: string;
  apiVersion: string;
  metadata: { resourceVersion?: string; continue?: string; remainingItemCount?: number };
  items: KubeObject[];
}

/**
 * docs/design.md mechanism (c): a targeted LIST must be past every scope change already applied, so the
 * client's next WATCH from its resourceVersion needs no re-list. A stale or older read becomes a
 * consistent one (resourceVersion ""): the apiserver serves it from its watch cache after a
 * progress check, where a NotOlderThan of a revision its cache has not seen would wait.
 */
export function consistentListQuery(query: URLSearchParams, notOlderThan: number): void {
  const rv = query.get('resourceVersion');
  if (!wellFormedVersionQuery(query) || query.has('continue') || query.get('resourceVersionMatch') === 'Exact' || notOlderThan === 0) return;
  if (rv === '0' || (rv && rvNumber(rv) < notOlderThan)) {
    query.delete('resourceVersion');
    query.delete('resourceVersionMatch');
  }
}

/**
 * Whether resourceVersion and resourceVersionMatch are values poolview may reason about. Anything
 * else goes upstream exactly as the client sent it, so the client gets the apiserver's own error.
 */
export function wellFormedVersionQuery(query: URLSearchParams, watch = false): boolean {
  const rv = query.get('resourceVersion') ?? '';
  const match = query.get('resourceVersionMatch') ?? '';
  // A watch takes a match only with sendInitialEvents, and then only NotOlderThan.
  const matches = watch ? (query.has('sendInitialEvents') ? ['', 'NotOlderThan'] : ['']) : ['', 'NotOlderThan', 'Exact'];
  return (rv === '' || (/^\d+$/.test(rv) && Number.isSafeInteger(Number(rv)))) && matches.includes(match);
}

/** Between two probes of upstream's current revision. */
const PROBE_INTERVAL_MS = 250;

/**
 * Waits until upstream has reached revision `at`, for --scope-change-wait at most, learning its
 * current revision from one-item consistent lists (which see every write, node leases included).
 * Only needed when `at` is past every revision poolview saw: a client holds a view at the newest
 * one (ViewRegistry.changedAt), and rule 5 marks must be revisions that exist. Logs when it runs out.
 */
export async function awaitRevision(ctx: InterceptContext, deps: ViewDeps, at: number, signal: AbortSignal): Promise<void> {
  if (deps.revisions.high >= at) return;
  const url = new URL(ctx.req.url ?? '/', 'http://x');
  const deadline = Date.now() + deps.registry.scopeChangeWaitMs;
  for (let first = true; deps.revisions.high < at; first = false) {
    const left = deadline - Date.now();
    if (left <= 0) {
      ctx.log.info({ resource: ctx.info.resource, at, highest: deps.revisions.high }, 'no newer revision upstream within --scope-change-wait; serving at an older one (its watch will re-list)');
      return;
    }
    if (!first) await new Promise((r) => setTimeout(r, Math.min(PROBE_INTERVAL_MS, left)));
    const upstream = await getUpstream(ctx, `${url.pathname}?limit=1`, signal);
    const text = await readAll(upstream.body);
    if (upstream.statusCode !== 200) return;
    deps.revisions.observe((JSON.parse(text) as KubeList).metadata?.resourceVersion, ctx.info.resource);
  }
}

/**
 * A component no filter ever targeted sees upstream as it is, streamed byte for byte; only the
 * resourceVersion is read from the head of the body, so that W counts what this client was served.
 */
async function streamUnchanged(res: ServerResponse, upstream: UpstreamResponse, deps: ViewDeps, resource: string): Promise<void> {
  res.writeHead(200, { 'content-type': String(upstream.headers['content-type']) });
  let head = true;
  for await (const chunk of upstream.body) {
    if (head) {
      head = false;
      const rv = rvNumber(/"resourceVersion":"(\d+)"/.exec((chunk as Buffer).subarray(0, 4096).toString('latin1'))?.[1]);
      deps.revisions.observe(rv, resource);
      deps.registry.delivered(resource, rv);
    }
    if (!res.write(chunk)) await drained(res);
  }
  res.end();
}

/** Which collection a list or watch reads: the same objects at the same resourceVersion. */
export function listIdentity(url: URL): string {
  const q = url.searchParams;
  return `${url.pathname}?labelSelector=${q.get('labelSelector') ?? ''}&fieldSelector=${q.get('fieldSelector') ?? ''}`;
}

export async function serveList(ctx: InterceptContext, subject: ViewSubject, deps: ViewDeps): Promise<void> {
  const { req, res, info } = ctx;
  const { metadataOnly, acceptable } = negotiate(req.headers.accept);
  if (!acceptable) return sendJson(res, 406, statusObject(406, 'NotAcceptable', 'only application/json is served for filtered resources'));
  const url = new URL(req.url ?? '/', 'http://x');
  // Past the resource's last scope change is all the contract needs: rv=0 lists (informers, the
  // kubelet's Pods) stay cache reads at the apiserver until a change makes them stale.
  if (info.verb === 'list' && subject.marked()) consistentListQuery(url.searchParams, deps.registry.changedAt(info.resource));

  const abort = new AbortController();
  // Only a client that left early aborts: an AbortError costs a stack trace per request.
  res.once('close', () => res.writableFinished || abort.abort());
  let body: KubeObject | KubeList;
  let changedAt: number;
  let chain: readonly Filter[];
  let kept: Record<string, string | string[]> = {};
  // The wait for a newer revision happens once per request, bounded by --scope-change-wait.
  let waited = false;
  if (info.verb === 'list' && subject.marked() && deps.registry.changedAt(info.resource) > deps.revisions.high) {
    waited = true;
    await awaitRevision(ctx, deps, deps.registry.changedAt(info.resource), abort.signal);
  }
  for (let attempt = 0; ; attempt++) {
    const upstream = await getUpstream(ctx, url.pathname + url.search, abort.signal);
    const type = String(upstream.headers['content-type'] ?? '');
    if (upstream.statusCode !== 200 || !type.startsWith('application/json')) return relay(res, upstream);
    if (subject.chain().length === 0 && !subject.marked() && !metadataOnly) return streamUnchanged(res, upstream, deps, info.resource);
    body = await listSlots.run(async () => JSON.parse(await readAll(upstream.body)) as KubeObject | KubeList, abort.signal);
    kept = upstreamHeaders(upstream.headers);
    const rv = rvNumber(body.metadata?.resourceVersion);
    deps.revisions.observe(rv, info.resource);
    chain = subject.chain();
    // Objects are marked with the last scope change's revision (docs/design.md mechanism (d)): it must be one the
    // answer already covers, so a change that came in meanwhile means reading again.
    changedAt = subject.marked() ? deps.registry.changedAt(info.resource) : 0;
    if (info.verb !== 'list' || changedAt <= rv || attempt === 1) {
      changedAt = Math.min(changedAt, info.verb === 'list' ? rv : deps.revisions.high);
      if (info.verb === 'list') deps.registry.delivered(info.resource, rv);
      break;
    }
    consistentListQuery(url.searchParams, changedAt);
    if (!waited) await awaitRevision(ctx, deps, changedAt, abort.signal);
    waited = true;
  }
  if (info.verb === 'get') {
    const out = applyChain(chain, body as KubeObject, deps.scope);
    if (!out) return sendJson(res, 404, notFound(info), kept);
    const served = notOlderThan(out, changedAt);
    return sendJson(res, 200, metadataOnly ? toMetadata(served) : served, kept);
  }

  const list = body as KubeList;
  const itemKind = list.kind.replace(/List$/, '');
  // Items of typed lists carry no kind; filters and views need it. They are typed in place (freshly
  // decoded, not shared yet) and served without it again, as upstream sent them.
  const typeMeta = `,"kind":${JSON.stringify(itemKind)},"apiVersion":${JSON.stringify(list.apiVersion)}}`;
  const items: string[] = [];
  // A client-go reflector watches from this list's resourceVersion next: its view will seed from
  // these objects instead of reading the same list again.
  const remember = subject.marked() && !url.searchParams.has('continue') && !list.metadata.continue;
  for (const item of list.items) {
    const untyped = !item.kind;
    if (untyped) {
      item.kind = itemKind;
      item.apiVersion = list.apiVersion;
    }
    const out = applyChain(chain, item, deps.scope);
    if (!out) continue;
    const served = notOlderThan(out, changedAt);
    if (metadataOnly) items.push(JSON.stringify(toMetadata(served)));
    else items.push(untyped ? untypedJson(served, typeMeta) : JSON.stringify(served));
  }
  if (remember) deps.registry.rememberList(listIdentity(url), rvNumber(list.metadata.resourceVersion), list.items);
  const { remainingItemCount: _dropped, ...metadata } = list.metadata;
  const { items: _items, ...head } = metadataOnly ? { kind: 'PartialObjectMetadataList', apiVersion: 'meta.k8s.io/v1', items: [] } : list;
  // The items go last, as the apiserver writes them.
  sendJsonText(res, 200, `${JSON.stringify({ ...head, metadata }).slice(0, -1)},"items":[${items.join(',')}]}`, kept);
}

/** JSON of an object typed in place, without the kind and apiVersion it was given (they were added last). */
function untypedJson(obj: KubeObject, typeMeta: string): string {
  const json = JSON.stringify(obj);
  if (json.endsWith(typeMeta)) return `${json.slice(0, -typeMeta.length)}}`;
  const { kind: _k, apiVersion: _v, ...rest } = obj;
  return JSON.stringify(rest);
}
