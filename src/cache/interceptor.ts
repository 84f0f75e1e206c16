// The cache as an undici interceptor on both upstream dispatchers: a GET of a cached collection
// or object, in JSON, that the cache can answer exactly (and, for a client, that the apiserver said
// this client may make) is answered from the cache; everything else goes to the real agent as it
// was. Pass-through, the view engine and the scope sources all read through it unchanged.
import type { Dispatcher } from 'undici';
import { resolveRequestInfo } from '../request-info.js';
import { cachedResource } from './resources.js';
import { serveFromCache, servableQuery, type CacheRequest, type ServedResource } from './serve.js';
import { HandlerResponder } from './responder.js';
import type { AccessReviews } from './authorization.js';

export interface InterceptorDeps {
  /** The cache of a resource, started on first use; undefined until it has listed once (bounded wait). */
  cacheFor(group: string, version: string, resource: string): Promise<ServedResource | undefined>;
  /** Reviews of clients' requests; absent for poolview's own dispatcher (its requests need none). */
  reviews?: AccessReviews;
  /** The upstream URL's path prefix, if the kubeconfig server has one. */
  basePath: string;
  served(resource: string, verb: string): void;
  /** A request of a cached resource the cache did not answer (debug: why bytes went upstream). */
  forwarded(path: string, why: string): void;
  onError(err: Error): void;
}

type Headers = Dispatcher.DispatchOptions['headers'];

/** Header values by lower-case name, whatever form undici was given them in. */
function headerMap(headers: Headers): Map<string, string> {
  const out = new Map<string, string>();
  if (!headers) return out;
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) for (const [k, v] of headers as unknown as [string, string][]) out.set(String(k).toLowerCase(), String(v));
    else for (let i = 0; i + 1 < headers.length; i += 2) out.set(String(headers[i]).toLowerCase(), String(headers[i + 1]));
    return out;
  }
  for (const [k, v] of Object.entries(headers as Record<string, unknown>)) if (v !== undefined) out.set(k.toLowerCase(), Array.isArray(v) ? v.join(', ') : String(v));
  return out;
}

/** JSON only: the first Accept entry is application/json (or a wildcard) with no `as=` conversion. */
export function acceptsPlainJson(accept: string | undefined): boolean {
  const first = (accept ?? '*/*').split(',')[0].trim();
  const [type, ...params] = first.split(';').map((p) => p.trim().toLowerCase());
  if (type !== 'application/json' && type !== '*/*' && type !== 'application/*' && type !== '') return false;
  return !params.some((p) => p.startsWith('as=') || p.startsWith('g=') || p.startsWith('v='));
}

interface Classified {
  request: CacheRequest;
  group: string;
  version: string;
  resource: string;
  authorization: string | undefined;
}

function classify(opts: Dispatcher.DispatchOptions, deps: InterceptorDeps): Classified | undefined {
  if ((opts.method ?? 'GET') !== 'GET' || opts.upgrade || !opts.path) return undefined;
  let path = opts.path;
  if (deps.basePath) {
    if (!path.startsWith(deps.basePath + '/')) return undefined;
    path = path.slice(deps.basePath.length);
  }
  const info = resolveRequestInfo('GET', path);
  if (!info.isResourceRequest || info.subresource || (info.verb !== 'get' && info.verb !== 'list' && info.verb !== 'watch')) return undefined;
  if (!cachedResource(info.apiGroup, info.apiVersion, info.resource)) return undefined;
  const headers = headerMap(opts.headers);
  if (!acceptsPlainJson(headers.get('accept'))) return undefined;
  for (const name of headers.keys()) if (name.startsWith('impersonate-')) return undefined;
  const query = new URL(path, 'http://x').searchParams;
  // The legacy /watch/ path and watch=... are the apiserver's to interpret; `watch` stays a known parameter.
  if (!servableQuery(query) || path.includes('/watch/')) return undefined;
  const watchParam = query.get('watch');
  if (watchParam !== null && !['true', '1', 'false', '0'].includes(watchParam)) return undefined;
  return {
    request: { verb: info.verb, namespace: info.namespace, name: info.name, query },
    group: info.apiGroup,
    version: info.apiVersion,
    resource: info.resource,
    authorization: headers.get('authorization'),
  };
}

async function answer(c: Classified, deps: InterceptorDeps, handler: Dispatcher.DispatchHandler): Promise<boolean> {
  if (deps.reviews) {
    // A client without credentials, or one the apiserver has not allowed, gets the apiserver's own answer.
    if (!c.authorization) return false;
    const allowed = await deps.reviews.allowed(c.authorization, { verb: c.request.verb, group: c.group, resource: c.resource, namespace: c.request.namespace, name: c.request.name });
    if (!allowed) return false;
  }
  const cache = await deps.cacheFor(c.group, c.version, c.resource);
  if (!cache) return false;
  const out = new HandlerResponder(handler);
  try {
    const served = await serveFromCache(cache, c.request, out);
    if (served) deps.served(c.resource, c.request.verb);
    return served;
  } catch (err) {
    if (!out.started) throw err;
    out.fail(err as Error);
    return true;
  }
}

export function cacheInterceptor(deps: InterceptorDeps): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) => (opts, handler) => {
    const c = classify(opts, deps);
    if (!c) return dispatch(opts, handler);
    answer(c, deps, handler).then(
      (served) => {
        if (served) return;
        deps.forwarded(opts.path, 'not answerable from the cache');
        dispatch(opts, handler);
      },
      (err: Error) => {
        deps.onError(err);
        dispatch(opts, handler);
      },
    );
    return true;
  };
}
