// serviceenvupdater: the kubelet sees Pods whose containers' explicit KUBERNETES_SERVICE_HOST /
// KUBERNETES_SERVICE_PORT env vars (set by a webhook or by hand, which would win over the values the
// kubelet injects) point at poolview's address and secure port.
//
// As yurt-hub v1.6+: only `spec.containers` (not init containers); a variable that is missing is
// not added; other variables are untouched. No known address → unchanged.

import { isCoreKind, specOf } from './annotations.js';
import type { Filter, FilterDecision, KubeObject, Scope } from './types.js';

const HOST = 'KUBERNETES_SERVICE_HOST';
const PORT = 'KUBERNETES_SERVICE_PORT';

/** A container with its service env vars set, or the container itself when nothing changes. */
function updateContainer(container: unknown, values: Record<string, string>): unknown {
  if (container === null || typeof container !== 'object') return container;
  const env = (container as Record<string, unknown>).env;
  if (!Array.isArray(env)) return container;
  let changed = false;
  const next = env.map((v: unknown) => {
    if (v === null || typeof v !== 'object') return v;
    const e = v as Record<string, unknown>;
    const value = typeof e.name === 'string' && Object.hasOwn(values, e.name) ? values[e.name] : undefined;
    if (value === undefined || e.value === value) return v;
    changed = true;
    return { ...e, value };
  });
  return changed ? { ...(container as Record<string, unknown>), env: next } : container;
}

function apply(obj: KubeObject, scope: Scope): FilterDecision {
  const address = scope.proxyAddress;
  if (address === undefined || !isCoreKind(obj, 'Pod')) return obj;
  const spec = specOf(obj);
  const containers = spec?.containers;
  if (!Array.isArray(containers)) return obj;
  const values = { [HOST]: address.host, [PORT]: String(address.securePort) };
  let changed = false;
  const next = containers.map((c: unknown) => {
    const out = updateContainer(c, values);
    if (out !== c) changed = true;
    return out;
  });
  if (!changed) return obj;
  return { ...obj, metadata: { ...obj.metadata }, spec: { ...spec, containers: next } };
}

export const serviceEnvUpdaterFilter: Filter = {
  name: 'serviceenvupdater',
  resources: ['pods'],
  defaultComponents: ['kubelet'],
  apply,
};
