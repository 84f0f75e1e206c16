// The view engine: filtered LIST/GET/WATCH for the components a filter targets, kept current by
// the scope sources. Everything else is left to the plain proxy.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { statusObject } from '../status.js';
import type { InterceptContext, Interceptor, Upstream } from '../types.js';
import { builtinFilters, type Filter, type ProxyAddress } from '../../filters/index.js';
import { Targeting } from '../targeting.js';
import { Revisions } from '../revisions.js';
import { ScopeSources } from '../scope/sources.js';
import { ViewRegistry } from './registry.js';
import { serveList, type ViewDeps, type ViewSubject } from './list.js';
import { serveWatch } from './watch.js';
import { sendJson } from './http.js';
import { SlotsBusyError } from '../slots.js';

export interface ViewOptions {
  upstream: Upstream;
  nodeName: string;
  /** --nodepool-name; undefined = read the Node's apps.openyurt.io/nodepool label. */
  nodePoolName?: string;
  configMap: { namespace: string; name: string };
  featureGates: Record<string, boolean>;
  log: Logger;
  registry: Registry;
  /** How long a targeted request waits for the scope sources before a 503 (default 10 s). */
  readyWaitMs?: number;
  autoListenDebounceMs?: number;
  /** The filters that run (--disabled-filters, --working-mode); default: every built-in one. */
  filters?: readonly Filter[];
  /** Where in-cluster clients reach poolview; later with ViewService.scope.setProxyAddress. */
  proxyAddress?: ProxyAddress;
  /** --scope-change-wait: how long transitions and lists wait for a revision past a scope change (default 1 s). */
  scopeChangeWaitMs?: number;
}

export interface ReadinessCheck {
  name: string;
  ok: boolean;
  detail?: string;
}

export interface ViewService {
  intercept: Interceptor;
  readiness(): ReadinessCheck[];
  close(): Promise<void>;
  /** For tests and `poolview view`. */
  readonly scope: ScopeSources;
  readonly targeting: Targeting;
}

const VIEW_VERBS = new Set(['get', 'list', 'watch']);

export async function startViews(opts: ViewOptions): Promise<ViewService> {
  const revisions = new Revisions();
  const filters = opts.filters ?? builtinFilters;
  const targeting = new Targeting(filters);
  const scope = new ScopeSources({ ...opts, targeting, revisions });
  const registry = new ViewRegistry(revisions, opts.registry, opts.log, opts.scopeChangeWaitMs);
  // Until the sources have synced no targeted request was served: what they learn meanwhile is the
  // initial state, not a change anyone saw (the synced scope is applied once, below).
  scope.onChange((resources, cause, focus, revision) => registry.scopeChanged(resources, cause, { focus, revision, mark: scope.synced }));
  scope.start();
  // Components a filter targets now or did before: only their views ever differed from upstream,
  // so only their answers need the scope-change marks of docs/design.md rule 5. Bounded by the ConfigMap's size.
  const everTargeted = new Set<string>();
  const noteTargeted = () => {
    for (const filter of filters) for (const c of targeting.componentsFor(filter.name)) everTargeted.add(c);
  };
  noteTargeted();
  scope.onChange(noteTargeted);
  const deps: ViewDeps = { scope, revisions, registry };
  const filterable = new Set(filters.flatMap((f) => f.resources));
  const transitions = () => scope.gate('ViewTransitions');

  // Requests served before the sources synced were decided with the default targeting only. The
  // synced scope is a change (with a new revision, rule 5) only for a component served then that the
  // synced ConfigMap targets; for anyone else it changes nothing they were shown. It is applied once,
  // by whichever notices the sync first, before any waiting targeted request goes on: no client
  // lists before it and resumes after it.
  const servedBeforeSync = new Set<string>();
  let syncApplied = false;
  const applySync = () => {
    if (syncApplied || !scope.synced) return;
    syncApplied = true;
    const targetedNow = [...servedBeforeSync].some((c) => filters.some((f) => targeting.componentsFor(f.name).includes(c)));
    registry.scopeChanged(filterable, 'synced', { mark: targetedNow });
    servedBeforeSync.clear();
  };
  const syncDone = scope.waitSynced().then(applySync);

  async function synced(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), opts.readyWaitMs ?? 10_000)));
    const ok = await Promise.race([syncDone.then(() => true), deadline]);
    clearTimeout(timer);
    return ok;
  }

  const intercept = async (ctx: InterceptContext): Promise<boolean> => {
    const { info, component } = ctx;
    if (!component || !info.isResourceRequest || info.subresource || !VIEW_VERBS.has(info.verb) || !filterable.has(info.resource)) return false;
    const subject: ViewSubject = {
      chain: () => targeting.filtersFor(component, info.resource, info.verb),
      marked: () => everTargeted.has(component),
      transitions,
    };
    // Targeted requests wait (bounded) for the scope sources; the others never wait. Every request
    // for a filterable resource still goes through a view, so a component the ConfigMap targets
    // later gets its transitions, and every resourceVersion served counts in W.
    if (subject.chain().length > 0 && !(await synced())) {
      sendJson(ctx.res, 503, statusObject(503, 'ServiceUnavailable', 'poolview: scope sources are not synced yet'), { 'retry-after': '1' });
      return true;
    }
    if (!scope.synced && servedBeforeSync.size < 1000) servedBeforeSync.add(component);
    applySync();
    try {
      if (info.verb === 'watch') await serveWatch(ctx, subject, deps);
      else await serveList(ctx, subject, deps);
    } catch (err) {
      if (ctx.res.headersSent) ctx.res.destroy();
      else if (!ctx.res.destroyed) failed(ctx, err as Error);
    }
    return true;
  };

  return {
    intercept,
    scope,
    targeting,
    readiness: () => scope.readiness(),
    close: async () => {
      registry.closeAll();
      scope.stop();
    },
  };
}

/** Answers a filtered request that could not be served, as the apiserver words such failures. */
function failed(ctx: InterceptContext, err: Error): void {
  const { info } = ctx;
  if (err instanceof SlotsBusyError) {
    sendJson(ctx.res, 503, statusObject(503, 'ServiceUnavailable', err.message), { 'retry-after': '1' });
    return;
  }
  const code = (err as { code?: string }).code;
  const timedOut = code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || err.name === 'TimeoutError';
  ctx.log.warn({ err: err.message, code, resource: info.resource, verb: info.verb }, 'filtered request failed');
  if (timedOut) sendJson(ctx.res, 504, statusObject(504, 'Timeout', `poolview: the apiserver did not answer in time: ${err.message}`), { 'retry-after': '1' });
  else sendJson(ctx.res, 502, statusObject(502, 'InternalError', `poolview: upstream request failed: ${err.message}`));
}
