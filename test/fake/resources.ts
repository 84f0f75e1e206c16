// Resource catalogue of the fake apiserver: which resources exist, in which group/versions, their kinds and scope.

export interface ResourceDef {
  /** Plural resource name, also the store key. */
  name: string;
  singular: string;
  kind: string;
  group: string; // "" = core
  /** Served versions; the first is the storage/preferred version. */
  versions: string[];
  namespaced: boolean;
  shortNames?: string[];
  subresources: string[]; // e.g. ['status', 'exec']
  /** Extra field selector labels beyond metadata.name / metadata.namespace: label -> dotted path. */
  fields: Record<string, string>;
}

const CRUD = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

export const RESOURCES: ResourceDef[] = [
  { name: 'services', singular: 'service', kind: 'Service', group: '', versions: ['v1'], namespaced: true, shortNames: ['svc'], subresources: ['status'], fields: { 'spec.clusterIP': 'spec.clusterIP', 'spec.type': 'spec.type' } },
  { name: 'endpoints', singular: 'endpoints', kind: 'Endpoints', group: '', versions: ['v1'], namespaced: true, shortNames: ['ep'], subresources: [], fields: {} },
  {
    name: 'pods', singular: 'pod', kind: 'Pod', group: '', versions: ['v1'], namespaced: true, shortNames: ['po'],
    subresources: ['status', 'exec', 'attach', 'portforward'],
    fields: { 'spec.nodeName': 'spec.nodeName', 'status.phase': 'status.phase', 'status.podIP': 'status.podIP', 'spec.serviceAccountName': 'spec.serviceAccountName' },
  },
  { name: 'nodes', singular: 'node', kind: 'Node', group: '', versions: ['v1'], namespaced: false, shortNames: ['no'], subresources: ['status'], fields: { 'spec.unschedulable': 'spec.unschedulable' } },
  { name: 'configmaps', singular: 'configmap', kind: 'ConfigMap', group: '', versions: ['v1'], namespaced: true, shortNames: ['cm'], subresources: [], fields: {} },
  { name: 'namespaces', singular: 'namespace', kind: 'Namespace', group: '', versions: ['v1'], namespaced: false, shortNames: ['ns'], subresources: ['status'], fields: { 'status.phase': 'status.phase' } },
  { name: 'events', singular: 'event', kind: 'Event', group: '', versions: ['v1'], namespaced: true, shortNames: ['ev'], subresources: [], fields: { 'involvedObject.name': 'involvedObject.name', 'involvedObject.kind': 'involvedObject.kind', 'reason': 'reason', 'type': 'type' } },
  { name: 'endpointslices', singular: 'endpointslice', kind: 'EndpointSlice', group: 'discovery.k8s.io', versions: ['v1', 'v1beta1'], namespaced: true, subresources: [], fields: {} },
  { name: 'nodepools', singular: 'nodepool', kind: 'NodePool', group: 'apps.openyurt.io', versions: ['v1beta2', 'v1beta1'], namespaced: false, shortNames: ['np'], subresources: ['status'], fields: {} },
  { name: 'leases', singular: 'lease', kind: 'Lease', group: 'coordination.k8s.io', versions: ['v1'], namespaced: true, subresources: [], fields: {} },
];

export const RESOURCE_BY_NAME = new Map(RESOURCES.map((r) => [r.name, r]));

/** "group/version" (or "version" for core) -> resources served there. */
export const RESOURCES_BY_GV = new Map<string, ResourceDef[]>();
for (const r of RESOURCES) {
  for (const v of r.versions) {
    const gv = apiVersionOf(r, v);
    let list = RESOURCES_BY_GV.get(gv);
    if (!list) RESOURCES_BY_GV.set(gv, (list = []));
    list.push(r);
  }
}

export function apiVersionOf(r: ResourceDef, version: string): string {
  return r.group ? `${r.group}/${version}` : version;
}

export function preferredApiVersion(r: ResourceDef): string {
  return apiVersionOf(r, r.versions[0]);
}

export function resourceDef(name: string): ResourceDef {
  const r = RESOURCE_BY_NAME.get(name);
  if (!r) throw new Error(`fake apiserver: unknown resource ${JSON.stringify(name)}`);
  return r;
}

/** Groups (other than core) with their versions, in the order /apis lists them. */
export function apiGroups(): Array<{ name: string; versions: string[] }> {
  const groups = new Map<string, string[]>();
  for (const r of RESOURCES) {
    if (!r.group) continue;
    const vs = groups.get(r.group) ?? [];
    for (const v of r.versions) if (!vs.includes(v)) vs.push(v);
    groups.set(r.group, vs);
  }
  return [...groups].map(([name, versions]) => ({ name, versions }));
}

export function apiResourceList(groupVersion: string): object | undefined {
  const defs = RESOURCES_BY_GV.get(groupVersion);
  if (!defs) return undefined;
  const resources: object[] = [];
  for (const r of defs) {
    resources.push({
      name: r.name,
      singularName: r.singular,
      namespaced: r.namespaced,
      kind: r.kind,
      verbs: CRUD,
      ...(r.shortNames ? { shortNames: r.shortNames } : {}),
      storageVersionHash: Buffer.from(`${r.group}/${r.versions[0]}/${r.kind}`).toString('base64').slice(0, 11),
    });
    for (const sub of r.subresources) {
      const verbs = sub === 'status' ? ['get', 'patch', 'update'] : ['create', 'get'];
      const kind = sub === 'status' ? r.kind : sub === 'exec' ? 'PodExecOptions' : sub === 'attach' ? 'PodAttachOptions' : 'PodPortForwardOptions';
      resources.push({ name: `${r.name}/${sub}`, singularName: '', namespaced: r.namespaced, kind, verbs });
    }
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion, resources };
}
