// The view engine: filtered LIST/GET/WATCH for the components a filter targets, kept current by
// the scope sources. Everything else is left to the plain proxy.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { InterceptContext, Interceptor, Upstream } from '../types.js';
import { builtinFilters } from '../../filters/index.js';
import { Targeting } from '../targeting.js';
import { Revisions } from '../revisions.js';
import { ScopeSources } from '../scope/sources.js';
import { ViewRegistry } from './registry.js';
import { serveList, type ViewDeps, type ViewSubject } from './list.js';
import { serveWatch } from './watch.js';
import { sendJson, status } from './http.js';

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
  const targeting = new Targeting(builtinFilters);
  const scope = new ScopeSources({ ...opts, targeting, revisions });
  const registry = new ViewRegistry(revisions, opts.registry, opts.log, opts.scopeChangeWaitMs);
  // Views opened before the sources synced decided with defaults only: the synced scope is a change
  // for them. Without any, neither the sync nor what the sources read while syncing needs a mark
  // (lists need not wait for a newer revision, resumes need not re-list).
  let servedBeforeSync = false;
  scope.onChange((resources, cause, focus, revision) =>
    registry.scopeChanged(resources, cause, { focus, revision, mark: scope.synced || servedBeforeSync }),
  );
  scope.start();
  // Components a filter targets now or did before: only their views ever differed from upstream,
  // so only their answers need the scope-change marks of rule 5. Bounded by the ConfigMap's size.
  const everTargeted = new Set<string>();
  const noteTargeted = () => {
    for (const filter of builtinFilters) for (const c of targeting.componentsFor(filter.name)) everTargeted.add(c);
  };
  noteTargeted();
  scope.onChange(noteTargeted);
  const deps: ViewDeps = { scope, revisions, registry };
  const filterable = new Set(builtinFilters.flatMap((f) => f.resources));
  const transitions = () => scope.gate('ViewTransitions');

  // Applied once, by whichever notices the sync first: a request let through by it must not see
  // the change come later (its resumed view would be answered 410).
  let syncApplied = false;
  const applySync = () => {
    if (syncApplied || !scope.synced) return;
    syncApplied = true;
    registry.scopeChanged(filterable, 'synced', { mark: servedBeforeSync });
  };
  void scope.waitSynced().then(applySync);

  async function synced(): Promise<boolean> {
    const deadline = Date.now() + (opts.readyWaitMs ?? 10_000);
    while (!scope.synced) {
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
    return true;
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
      sendJson(ctx.res, 503, status(503, 'ServiceUnavailable', 'poolview: scope sources are not synced yet'), { 'retry-after': '1' });
      return true;
    }
    if (!scope.synced) servedBeforeSync = true;
    applySync();
    try {
      if (info.verb === 'watch') await serveWatch(ctx, subject, deps);
      else await serveList(ctx, subject, deps);
    } catch (err) {
      if (ctx.res.headersSent) ctx.res.destroy();
      else if (!ctx.res.destroyed) {
        ctx.log.warn({ err: (err as Error).message, resource: info.resource, verb: info.verb }, 'filtered request failed');
        sendJson(ctx.res, 502, status(502, 'InternalError', `poolview: upstream request failed: ${(err as Error).message}`));
      }
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
