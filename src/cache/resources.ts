// The resources poolview caches: the collections many node agents read the whole cluster of.

export interface CachedResource {
  group: string;
  version: string;
  /** Plural, as in the path. */
  resource: string;
  kind: string;
  /** Collection path of the whole cluster, e.g. /api/v1/services. */
  path: string;
}

function def(group: string, version: string, resource: string, kind: string): CachedResource {
  const path = group ? `/apis/${group}/${version}/${resource}` : `/api/${version}/${resource}`;
  return { group, version, resource, kind, path };
}

export const CACHED_RESOURCES: readonly CachedResource[] = [
  def('', 'v1', 'services', 'Service'),
  def('', 'v1', 'endpoints', 'Endpoints'),
  def('discovery.k8s.io', 'v1', 'endpointslices', 'EndpointSlice'),
];

export function apiVersionOf(r: CachedResource): string {
  return r.group ? `${r.group}/${r.version}` : r.version;
}

export function cachedResource(group: string, version: string, resource: string): CachedResource | undefined {
  return CACHED_RESOURCES.find((r) => r.group === group && r.version === version && r.resource === resource);
}
