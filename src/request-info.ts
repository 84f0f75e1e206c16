// Classifies a request as kube-apiserver's RequestInfoResolver does, so targeting and metrics speak
// the same words as RBAC: verb, API group/version, namespace, resource, name, subresource.
import type { RequestInfo } from './types.js';

const API_PREFIXES = new Set(['api', 'apis']);
/** Verbs that may appear as a path segment before the resource (legacy paths). */
const SPECIAL_VERBS = new Set(['proxy', 'watch']);
/** Subresources of a namespace itself: /api/v1/namespaces/<ns>/status. */
const NAMESPACE_SUBRESOURCES = new Set(['status', 'finalize']);

const METHOD_VERBS: Record<string, string> = {
  GET: 'get',
  HEAD: 'get',
  POST: 'create',
  PUT: 'update',
  PATCH: 'patch',
  DELETE: 'delete',
};

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/**
 * `?watch=` as the apiserver converts query parameters to bool (Convert_Slice_string_To_bool):
 * absent, `0` or `false` (any case) is false; any other value, even empty, is a watch.
 */
function isWatchParam(value: string | null): boolean {
  return value !== null && value !== '0' && value.toLowerCase() !== 'false';
}

/** The name a `fieldSelector=metadata.name=x` pins a collection request to, as the apiserver reads it for authorization. */
function nameFromFieldSelector(selector: string | null): string {
  if (!selector) return '';
  for (const term of selector.split(',')) {
    const m = /^\s*metadata\.name\s*==?\s*(.*?)\s*$/.exec(term);
    if (m) return m[1];
  }
  return '';
}

export function resolveRequestInfo(method: string, url: string): RequestInfo {
  const queryAt = url.indexOf('?');
  const path = queryAt === -1 ? url : url.slice(0, queryAt);
  const query = new URLSearchParams(queryAt === -1 ? '' : url.slice(queryAt + 1));
  const upperMethod = method.toUpperCase();

  const nonResource: RequestInfo = {
    isResourceRequest: false,
    verb: upperMethod.toLowerCase(),
    apiPrefix: '',
    apiGroup: '',
    apiVersion: '',
    namespace: '',
    resource: '',
    subresource: '',
    name: '',
    path,
  };

  let parts = path.replace(/^\/+|\/+$/g, '').split('/').map(decode);
  if (!API_PREFIXES.has(parts[0])) return nonResource;

  const info: RequestInfo = { ...nonResource, apiPrefix: parts[0] };
  parts = parts.slice(1);
  if (info.apiPrefix === 'api') {
    // /api and /api/v1 alone are discovery, not resources.
    if (parts.length < 2) return nonResource;
    info.apiVersion = parts[0];
    parts = parts.slice(1);
  } else {
    if (parts.length < 3) return nonResource;
    info.apiGroup = parts[0];
    info.apiVersion = parts[1];
    parts = parts.slice(2);
  }

  info.isResourceRequest = true;
  if (SPECIAL_VERBS.has(parts[0])) {
    if (parts.length < 2) return nonResource;
    info.verb = parts[0];
    parts = parts.slice(1);
  } else {
    info.verb = METHOD_VERBS[upperMethod] ?? '';
  }

  if (parts[0] === 'namespaces') {
    if (parts.length > 1) {
      info.namespace = parts[1];
      // /namespaces/<ns>/<resource>... is namespaced; /namespaces/<ns>[/status|/finalize] is the Namespace itself.
      if (parts.length > 2 && !NAMESPACE_SUBRESOURCES.has(parts[2])) parts = parts.slice(2);
    }
  }

  info.resource = parts[0] ?? '';
  if (parts.length >= 2) info.name = parts[1];
  // Legacy /proxy/<resource>/<name>/<path...> carries no subresource; the rest is the proxied path.
  if (parts.length >= 3 && info.verb !== 'proxy') info.subresource = parts[2];

  if (info.name === '' && info.verb === 'get') info.verb = 'list';
  if (info.verb === 'list' && isWatchParam(query.get('watch'))) info.verb = 'watch';
  if (info.name === '' && info.verb === 'delete') info.verb = 'deletecollection';
  if (info.verb === 'list' || info.verb === 'watch' || info.verb === 'deletecollection') {
    info.name = nameFromFieldSelector(query.get('fieldSelector')) || info.name;
  }
  return info;
}

/** User-Agent → component, as yurt-hub names clients: lower-cased and cut at the first '/'. */
export function componentOf(userAgent: string | undefined): string | undefined {
  if (!userAgent) return undefined;
  const slash = userAgent.indexOf('/');
  const component = (slash === -1 ? userAgent : userAgent.slice(0, slash)).trim().toLowerCase();
  return component === '' ? undefined : component;
}
