// masterservice: the kubelet sees the Service default/kubernetes at poolview's address, so the
// KUBERNETES_SERVICE_HOST/PORT it injects into pods point in-cluster clients at poolview.
//
// Its cluster IP(s) become poolview's address and the port named "https" poolview's secure port;
// everything else stays. Any other Service, or no known address, is left unchanged.

import { isCoreKind, isNamed, specOf, withHttpsPort } from './annotations.js';
import type { Filter, FilterDecision, KubeObject, Scope } from './types.js';

function apply(obj: KubeObject, scope: Scope): FilterDecision {
  const address = scope.proxyAddress;
  if (address === undefined || !isCoreKind(obj, 'Service') || !isNamed(obj, 'default', 'kubernetes')) return obj;
  const spec = specOf(obj);
  if (spec === undefined) return obj;
  const ports = withHttpsPort(spec.ports, address.securePort);
  const ips = spec.clusterIPs;
  const sameIps = Array.isArray(ips) && ips.length === 1 && ips[0] === address.host;
  if (spec.clusterIP === address.host && sameIps && ports === spec.ports) return obj;
  return { ...obj, metadata: { ...obj.metadata }, spec: { ...spec, clusterIP: address.host, clusterIPs: [address.host], ports } };
}

export const masterServiceFilter: Filter = {
  name: 'masterservice',
  resources: ['services'],
  defaultComponents: ['kubelet'],
  apply,
};
