// The resources poolview caches: the collections many node agents read the whole cluster of.

export interface CachedResource {
  group: string;
  version: string;
  /** Plural, as in the path. */
  resource: string;
  kind: string;
  /** Collection path of the whole cluster, e.g. /api/v1/services. */
  path: string;
  /** Field selector labels the apiserver supports beyond metadata.name/namespace, and how to read them. */
  fields: Readonly<Record<string, (obj: { spec?: Record<string, unknown> }) => string>>;
}

function def(group: string, version: string, resource: string, kind: string, fields: CachedResource['fields'] = {}): CachedResource {
  const path = group ? `/apis/${group}/${version}/${resource}` : `/api/${version}/${resource}`;
  return { group, version, resource, kind, path, fields };
}

const specField = (name: string) => (obj: { spec?: Record<string, unknown> }) => String(obj.spec?.[name] ?? '');

export const CACHED_RESOURCES: readonly CachedResource[] = [
  // kube-proxy lists Services with fieldSelector=spec.clusterIP!=None.
  def('', 'v1', 'services', 'Service', { 'spec.clusterIP': specField('clusterIP'), 'spec.type': specField('type') }),
  def('', 'v1', 'endpoints', 'Endpoints'),
  def('discovery.k8s.io', 'v1', 'endpointslices', 'EndpointSlice'),
];

export function apiVersionOf(r: CachedResource): string {
  return r.group ? `${r.group}/${r.version}` : r.version;
}

export function cachedResource(group: string, version: string, resource: string): CachedResource | undefined {
  return CACHED_RESOURCES.find((r) => r.group === group && r.version === version && r.resource === resource);
}
