// forwardkubesvctraffic: kube-proxy sees the EndpointSlice default/kubernetes with one ready
// endpoint, poolview's address, and its "https" port at poolview's secure port — so in-cluster
// clients that dial the kubernetes Service's cluster IP reach poolview, not the cloud.
//
// Only when the slice's addressType is the family of poolview's address; otherwise it is left
// unchanged (with one warning). As yurt-hub v1.5 and later.

import { isIP } from 'node:net';
import { isNamed, withHttpsPort } from './annotations.js';
import type { Filter, FilterDecision, KubeObject, Scope } from './types.js';

function isEndpointSlice(obj: KubeObject): boolean {
  if (obj.kind !== undefined && obj.kind !== '') return obj.kind === 'EndpointSlice';
  return typeof obj.addressType === 'string'; // a list item without TypeMeta
}

function apply(obj: KubeObject, scope: Scope): FilterDecision {
  const address = scope.proxyAddress;
  if (address === undefined || !isEndpointSlice(obj) || !isNamed(obj, 'default', 'kubernetes')) return obj;
  const family = isIP(address.host) === 6 ? 'IPv6' : 'IPv4';
  if (obj.addressType !== family) {
    scope.filterWarning?.(
      `forwardkubesvctraffic/${String(obj.addressType)}/${family}`,
      `forwardkubesvctraffic: EndpointSlice default/${obj.metadata.name} has addressType ${String(obj.addressType)}, poolview's address ${address.host} is ${family}; left unchanged`,
    );
    return obj;
  }
  return {
    ...obj,
    metadata: { ...obj.metadata },
    endpoints: [{ addresses: [address.host], conditions: { ready: true } }],
    ports: withHttpsPort(obj.ports, address.securePort),
  };
}

export const forwardKubeSvcTrafficFilter: Filter = {
  name: 'forwardkubesvctraffic',
  resources: ['endpointslices'],
  defaultComponents: ['kube-proxy'],
  apply,
};
