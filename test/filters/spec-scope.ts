// Turns the fixtures of test/fixtures/openyurt-cases.yaml (yurt-hub's own test cases, kept as this
// project's test data) into a filter Scope and Kubernetes objects.
//
// Mapping of the spec's yurt-hub configuration onto poolview's Scope:
//   - nodePool: config.poolNameFlag when non-empty, else the Node's apps.openyurt.io/nodepool LABEL
//     (cluster.nodes[n].labels or cluster.nodeLabels[n]); annotations never count.
//   - poolMembers: enablePoolServiceTopology → union of the NodeBuckets labelled with the pool
//     (none → undefined); else enableNodePool (yurt-hub's default: true) → NodePool status.nodes
//     (no NodePool → undefined); both off → undefined (pool topology unavailable).
//   - services: the case's Service `default/svc1` with the case's topologyKeys annotation.

import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { LABEL_NODEPOOL } from '../../filters/annotations.js';
import { expect, it } from 'vitest';
import type { Filter, KubeObject, Scope } from '../../filters/types.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
export type SpecCase = Record<string, any> & { id: string };
export type Spec = Record<string, any>;

const DEFAULT_SPEC = fileURLToPath(new URL('../fixtures/openyurt-cases.yaml', import.meta.url));

let cached: Spec | undefined;

/** The behaviour cases (path overridable with POOLVIEW_SPEC). */
export function loadSpec(): Spec {
  if (cached) return cached;
  const file = process.env.POOLVIEW_SPEC ?? DEFAULT_SPEC;
  if (!existsSync(file)) throw new Error(`spec file not found: ${file} (set POOLVIEW_SPEC)`);
  cached = parse(readFileSync(file, 'utf8')) as Spec;
  return cached;
}

export const NAMESPACE = 'default';
export const SERVICE_NAME = 'svc1';
export const TRIGGER_TIME = '2024-05-01T10:00:00Z';

interface Cluster {
  nodeLabels: Record<string, string | null>;
  nodeLabelMaps: Record<string, Record<string, string>>;
  nodePools: Record<string, string[]>;
  nodeBuckets: { name: string; poolLabel: string; nodes: string[] }[];
}

function resolveCluster(spec: Spec, c: SpecCase): Cluster {
  const cluster = c.cluster ?? {};
  const base = cluster.fixture ? spec.fixtures[cluster.fixture] : {};
  const nodes: Record<string, { labels?: Record<string, string> }> = cluster.nodes ?? {};
  return {
    nodeLabels: { ...(base.nodeLabels ?? {}), ...(cluster.nodeLabels ?? {}) },
    nodeLabelMaps: Object.fromEntries(Object.entries(nodes).map(([n, v]) => [n, v.labels ?? {}])),
    nodePools: { ...(base.nodePools ?? {}), ...(cluster.nodePools ?? {}) },
    nodeBuckets: cluster.nodeBuckets ?? base.nodeBuckets ?? [],
  };
}

export interface ScopeExtras {
  services?: KubeObject[];
  gates?: Record<string, boolean>;
  endpointPools?: Record<string, string[] | undefined>;
  /** Overrides the pool resolved from the case (e.g. list cases without config). */
  nodePool?: string;
}

/** A Scope as yurt-hub, configured as the case says, would see the cluster. */
export function scopeFor(c: SpecCase, extras: ScopeExtras = {}): Scope {
  const spec = loadSpec();
  const config = c.config ?? {};
  const cluster = resolveCluster(spec, c);
  const nodeName: string = config.nodeName ?? spec.meta.current_node;
  const poolOf = (node: string): string | undefined =>
    cluster.nodeLabelMaps[node]?.[LABEL_NODEPOOL] ?? cluster.nodeLabels[node] ?? undefined;
  const flag: string | undefined = config.poolNameFlag ? config.poolNameFlag : undefined;
  const nodePool = extras.nodePool ?? flag ?? poolOf(nodeName);
  const enableNodePool: boolean = config.enableNodePool ?? true;
  const enableBuckets: boolean = config.enablePoolServiceTopology ?? false;

  const services = new Map<string, KubeObject>();
  for (const s of extras.services ?? []) services.set(`${s.metadata.namespace}/${s.metadata.name}`, s);

  return {
    nodeName,
    nodePool,
    poolMembers(pool) {
      if (enableBuckets) {
        const buckets = cluster.nodeBuckets.filter((b) => b.poolLabel === pool);
        if (buckets.length === 0) return undefined;
        return new Set(buckets.flatMap((b) => b.nodes));
      }
      if (enableNodePool) {
        const members = cluster.nodePools[pool];
        return members ? new Set(members) : undefined;
      }
      return undefined;
    },
    poolOf,
    service: (ns, name) => services.get(`${ns}/${name}`),
    endpointPools(ns, name) {
      const pools = extras.endpointPools?.[`${ns}/${name}`];
      return pools ? new Set(pools) : undefined;
    },
    gate: (name) => extras.gates?.[name] ?? false,
  };
}

/** Scope fields given directly (unit tests). */
export function makeScope(fields: {
  nodeName?: string;
  nodePool?: string;
  pools?: Record<string, string[]>;
  services?: KubeObject[];
  gates?: Record<string, boolean>;
  endpointPools?: Record<string, string[]>;
}): Scope {
  const pools = fields.pools ?? {};
  const services = new Map((fields.services ?? []).map((s) => [`${s.metadata.namespace}/${s.metadata.name}`, s]));
  return {
    nodeName: fields.nodeName ?? 'node1',
    nodePool: fields.nodePool,
    poolMembers: (p) => (pools[p] ? new Set(pools[p]) : undefined),
    poolOf: (n) => Object.keys(pools).find((p) => pools[p].includes(n)),
    service: (ns, name) => services.get(`${ns}/${name}`),
    endpointPools: (ns, name) => {
      const p = fields.endpointPools?.[`${ns}/${name}`];
      return p ? new Set(p) : undefined;
    },
    gate: (name) => fields.gates?.[name] ?? false,
  };
}

/** The Service the case's endpoints belong to, with `openyurt.io/topologyKeys` as the case sets it. */
export function topologyService(annotationValue: string | null | undefined, name = SERVICE_NAME): KubeObject {
  const annotations: Record<string, string> = {};
  if (typeof annotationValue === 'string') annotations['openyurt.io/topologyKeys'] = annotationValue;
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: NAMESPACE, resourceVersion: '100', annotations },
    spec: { type: 'ClusterIP', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, protocol: 'TCP' }] },
  };
}

interface Shorthand {
  ip: string;
  node: string | null;
}

function endpointsOf(spec: Spec, value: unknown): Shorthand[] {
  if (value === 'fixtureA') return spec.fixtures.A.endpoints;
  return (value ?? []) as Shorthand[];
}

/** An EndpointSlice endpoint from the spec shorthand, with the fields the filter must leave alone. */
function sliceEndpoint(e: Shorthand, beta: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = {
    addresses: [e.ip],
    conditions: { ready: true, serving: true, terminating: false },
    targetRef: { kind: 'Pod', namespace: NAMESPACE, name: `pod-${e.ip.replaceAll('.', '-')}` },
  };
  if (beta) {
    if (e.node !== null) out.topology = { 'kubernetes.io/hostname': e.node };
  } else if (e.node !== null) {
    out.nodeName = e.node;
  }
  return out;
}

/**
 * An EndpointSlice from a case input. `typeMeta: false` builds it as a list item (the apiserver
 * sends list items without kind/apiVersion).
 */
export function endpointSlice(
  input: Record<string, any>,
  opts: { apiVersion?: string; typeMeta?: boolean; name?: string } = {},
): KubeObject {
  const spec = loadSpec();
  const apiVersion: string = input.apiVersion ?? opts.apiVersion ?? 'discovery.k8s.io/v1';
  const beta = apiVersion.endsWith('/v1beta1');
  const labels: Record<string, string> = input.labels ?? { 'kubernetes.io/service-name': SERVICE_NAME };
  const obj: KubeObject = {
    metadata: {
      name: opts.name ?? input.name ?? 'svc1-abcde',
      namespace: NAMESPACE,
      resourceVersion: '200',
      labels,
      annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': TRIGGER_TIME },
    },
    addressType: 'IPv4',
    endpoints: endpointsOf(spec, input.endpoints).map((e) => sliceEndpoint(e, beta)),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
  if (opts.typeMeta === false) return obj;
  return { apiVersion, kind: 'EndpointSlice', ...obj };
}

/** A core/v1 Endpoints from a case input (`subsets[].addresses` in shorthand). */
export function endpointsObject(input: Record<string, any>): KubeObject {
  const spec = loadSpec();
  const subsets = (input.subsets ?? []).map((s: Record<string, unknown>) => ({
    addresses: endpointsOf(spec, s.addresses).map((e) => {
      const a: Record<string, unknown> = { ip: e.ip, targetRef: { kind: 'Pod', namespace: NAMESPACE, name: `pod-${e.ip}` } };
      if (e.node !== null) a.nodeName = e.node;
      return a;
    }),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  }));
  return {
    apiVersion: 'v1',
    kind: 'Endpoints',
    metadata: {
      name: input.name ?? SERVICE_NAME,
      namespace: NAMESPACE,
      resourceVersion: '300',
      annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': TRIGGER_TIME },
    },
    subsets,
  };
}

/** A Service from a nodeportisolation case input (`listen: null` or missing = no annotation). */
export function nodePortService(
  input: Record<string, any>,
  opts: { typeMeta?: boolean; annotations?: Record<string, string> } = {},
): KubeObject {
  const annotations: Record<string, string> = { ...(input.annotations ?? {}), ...(opts.annotations ?? {}) };
  if (typeof input.listen === 'string') annotations['nodeport.openyurt.io/listen'] = input.listen;
  const type: string = input.type ?? 'ClusterIP';
  const ports: Record<string, unknown>[] = [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }];
  if (type === 'NodePort' || type === 'LoadBalancer') ports[0].nodePort = 30080;
  const obj: KubeObject = {
    metadata: { name: input.name ?? SERVICE_NAME, namespace: input.namespace ?? NAMESPACE, resourceVersion: '400', annotations },
    spec: { type, clusterIP: '10.96.105.187', ports },
  };
  if (opts.typeMeta === false) return obj;
  return { apiVersion: 'v1', kind: 'Service', ...obj };
}

/** First address of each EndpointSlice endpoint. */
export function sliceIps(obj: KubeObject): string[] {
  return (obj.endpoints as { addresses: string[] }[]).map((e) => e.addresses[0]);
}

/** Object without one top-level field, to compare "everything else". */
export function without(obj: KubeObject, field: string): Record<string, unknown> {
  const { [field]: _omit, ...rest } = obj;
  return rest;
}

/** The `other_filters` cases of one filter. */
export function otherFilterCases(filter: string): SpecCase[] {
  return (loadSpec().other_filters as SpecCase[]).filter((c) => c.filter === filter);
}

/** poolview's address as a case's config gives it (yurt-hub's defaults otherwise). */
export function addressScope(config: Record<string, any> = {}, fields: Parameters<typeof makeScope>[0] = {}): Scope & { warnings: string[] } {
  const warnings: string[] = [];
  const seen = new Set<string>();
  return {
    ...makeScope(fields),
    proxyAddress: { host: config.host ?? '169.254.2.1', securePort: Number(config.securePort ?? config.port ?? 10268) },
    filterWarning(key, message) {
      if (seen.has(key)) return;
      seen.add(key);
      warnings.push(message);
    },
    warnings,
  };
}

/**
 * An object from an `other_filters` input shorthand (Service, EndpointSlice, ConfigMap, Pod), with
 * the fields a filter must leave alone. `typeMeta: false` builds it as a list item.
 */
export function otherFilterObject(input: Record<string, any>, opts: { typeMeta?: boolean } = {}): KubeObject {
  const { kind, apiVersion, namespace, name, annotations, ...fields } = input;
  const metadata = {
    name: name ?? `${String(kind).toLowerCase()}1`,
    namespace: namespace ?? NAMESPACE,
    resourceVersion: '500',
    labels: { app: 'spec' },
    annotations: { ...(annotations ?? {}) },
  };
  let body: Record<string, unknown>;
  switch (kind) {
    case 'Service':
      body = {
        spec: {
          type: fields.type ?? 'ClusterIP',
          clusterIP: fields.clusterIP ?? '10.96.105.187',
          clusterIPs: fields.clusterIPs ?? [fields.clusterIP ?? '10.96.105.187'],
          ports: fields.ports ?? [{ name: 'http', port: 80, protocol: 'TCP' }],
          sessionAffinity: 'None',
        },
      };
      break;
    case 'EndpointSlice':
      body = { addressType: fields.addressType, endpoints: fields.endpoints ?? [{ addresses: ['172.16.0.10'] }], ports: fields.ports ?? [{ name: 'https', port: 6443, protocol: 'TCP' }] };
      break;
    case 'ConfigMap':
      body = { data: fields.data ?? {} };
      break;
    case 'Pod':
      body = {
        spec: {
          initContainers: [{ name: 'init', image: 'busybox', env: [{ name: 'KUBERNETES_SERVICE_HOST', value: 'init-host' }] }],
          containers: (fields.containers ?? []).map((c: Record<string, unknown>, i: number) => ({ name: `c${i}`, image: 'busybox', ...c })),
          nodeName: 'node1',
        },
      };
      break;
    default:
      throw new Error(`no shorthand for kind ${kind}`);
  }
  const obj: KubeObject = { metadata, ...body };
  if (opts.typeMeta === false) return obj;
  return { apiVersion: apiVersion ?? (kind === 'EndpointSlice' ? 'discovery.k8s.io/v1' : 'v1'), kind, ...obj };
}

/**
 * Runs a filter on every `other_filters` case of it: `expect` fields are the input's with those
 * fields replaced; unchanged/kept = the very same object; dropped = null. The input is never mutated.
 */
export function runOtherFilterCases(filter: Filter): void {
  for (const c of otherFilterCases(filter.name)) {
    const title = `${c.id}: ${c.expect.note ?? c.expect.result ?? 'transformed'}`;
    for (const typeMeta of [true, false]) {
      it(`${title}${typeMeta ? '' : ' (list item without kind)'}`, () => {
        const input = otherFilterObject(c.input, { typeMeta });
        const before = structuredClone(input);
        const out = filter.apply(input, addressScope(c.config));
        expect(input, 'input must not be mutated').toEqual(before);
        if (c.expect.result === 'dropped') expect(out).toBeNull();
        else if (c.expect.result === 'unchanged' || c.expect.result === 'kept') expect(out).toBe(input);
        else {
          const { result: _r, note: _n, ...fields } = c.expect;
          expect(out).toEqual(otherFilterObject({ ...c.input, ...fields }, { typeMeta }));
        }
      });
    }
  }
}
