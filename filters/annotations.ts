// Well-known annotation, label and gate names the filters read (OpenYurt's names, so existing
// clusters keep working), plus small shape helpers shared by the filters.

import type { KubeObject } from './types.js';

/** On a Service: which endpoints a node sees (servicetopology). */
export const ANNOTATION_TOPOLOGY_KEYS = 'openyurt.io/topologyKeys';
/** topologyKeys values. */
export const TOPOLOGY_HOSTNAME = 'kubernetes.io/hostname';
export const TOPOLOGY_NODEPOOL = 'openyurt.io/nodepool';
export const TOPOLOGY_ZONE = 'kubernetes.io/zone';

/** On an EndpointSlice: the Service it belongs to. */
export const LABEL_SERVICE_NAME = 'kubernetes.io/service-name';
/** discovery.k8s.io/v1beta1 endpoint topology key naming the endpoint's node. */
export const TOPOLOGY_KEY_HOSTNAME = 'kubernetes.io/hostname';

/** On a NodePort/LoadBalancer Service: the pools whose nodes listen on its node ports. */
export const ANNOTATION_NODEPORT_LISTEN = 'nodeport.openyurt.io/listen';
/** On a NodePort/LoadBalancer Service: listen in the pools where its ready endpoints run. */
export const ANNOTATION_NODEPORT_AUTO_LISTEN = 'nodeport.openyurt.io/auto-listen';
/** Feature gate enabling ANNOTATION_NODEPORT_AUTO_LISTEN. */
export const GATE_NODEPORT_AUTO_LISTEN = 'NodePortAutoListen';

/** On a LoadBalancer Service: "true" keeps it away from edge kube-proxies (discardcloudservice). */
export const ANNOTATION_DISCARD = 'svc.openyurt.io/discard';

/** On a Node: its pool. */
export const LABEL_NODEPOOL = 'apps.openyurt.io/nodepool';

/** An annotation's value; undefined when absent. Never throws on odd input. */
export function annotation(obj: KubeObject, key: string): string | undefined {
  const annotations = obj.metadata?.annotations;
  if (annotations === null || typeof annotations !== 'object') return undefined;
  if (!Object.prototype.hasOwnProperty.call(annotations, key)) return undefined;
  const value = annotations[key];
  return typeof value === 'string' ? value : undefined;
}

/** A label's value; undefined when absent. */
export function label(obj: KubeObject, key: string): string | undefined {
  const labels = obj.metadata?.labels;
  if (labels === null || typeof labels !== 'object') return undefined;
  if (!Object.prototype.hasOwnProperty.call(labels, key)) return undefined;
  const value = labels[key];
  return typeof value === 'string' ? value : undefined;
}

/**
 * Whether `obj` is of a core/v1 kind. Objects typed by the engine carry kind and apiVersion; an
 * object without them is taken to be of the kind the filter's resource holds.
 */
export function isCoreKind(obj: KubeObject, kind: string): boolean {
  if (obj.kind !== undefined && obj.kind !== '' && obj.kind !== kind) return false;
  return obj.apiVersion === undefined || obj.apiVersion === '' || obj.apiVersion === 'v1';
}

/** Whether `obj` is the object namespace/name. */
export function isNamed(obj: KubeObject, namespace: string, name: string): boolean {
  return obj.metadata?.namespace === namespace && obj.metadata?.name === name;
}

/** `obj.spec` as a record, or undefined. */
export function specOf(obj: KubeObject): Record<string, unknown> | undefined {
  const spec = obj.spec;
  return spec !== null && typeof spec === 'object' && !Array.isArray(spec) ? (spec as Record<string, unknown>) : undefined;
}

/**
 * `ports` with the port named "https" set to `port`, or `ports` itself when nothing changes
 * (masterservice on the Service, forwardkubesvctraffic on its EndpointSlice).
 */
export function withHttpsPort(ports: unknown, port: number): unknown {
  if (!Array.isArray(ports)) return ports;
  let changed = false;
  const out = ports.map((p: unknown) => {
    if (p === null || typeof p !== 'object' || (p as Record<string, unknown>).name !== 'https') return p;
    if ((p as Record<string, unknown>).port === port) return p;
    changed = true;
    return { ...(p as Record<string, unknown>), port };
  });
  return changed ? out : ports;
}
