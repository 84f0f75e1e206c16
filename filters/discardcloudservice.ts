// discardcloudservice: Services meant for the cloud never reach an edge kube-proxy — LoadBalancer
// Services annotated `svc.openyurt.io/discard: "true"` and the tunnel server's internal Service
// kube-system/x-tunnel-server-internal-svc (any type). As yurt-hub v1.5 and later.

import { ANNOTATION_DISCARD, annotation, isCoreKind, isNamed, specOf } from './annotations.js';
import type { Filter, FilterDecision, KubeObject } from './types.js';

function apply(obj: KubeObject): FilterDecision {
  if (!isCoreKind(obj, 'Service')) return obj;
  if (isNamed(obj, 'kube-system', 'x-tunnel-server-internal-svc')) return null;
  if (specOf(obj)?.type === 'LoadBalancer' && annotation(obj, ANNOTATION_DISCARD) === 'true') return null;
  return obj;
}

export const discardCloudServiceFilter: Filter = {
  name: 'discardcloudservice',
  resources: ['services'],
  defaultComponents: ['kube-proxy'],
  apply,
};
