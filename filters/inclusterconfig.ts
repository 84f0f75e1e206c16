// inclusterconfig: the kubelet sees the ConfigMap kube-system/kube-proxy with the `kubeconfig:`
// line of `config.conf` commented out, so the kube-proxy it mounts it into falls back to in-cluster
// config — the kubernetes Service, which masterservice points at poolview.
//
// As yurt-hub: a line that, trimmed, splits on ':' into exactly two parts, the first `kubeconfig`,
// gets its first `kubeconfig` turned into `#kubeconfig`. Everything else is left as it is.

import { isCoreKind, isNamed } from './annotations.js';
import type { Filter, FilterDecision, KubeObject } from './types.js';

const CONFIG_KEY = 'config.conf';

/** `config` with its kubeconfig line commented out; the same string when there is none. */
export function commentOutKubeconfig(config: string): string {
  const lines = config.split('\n');
  let changed = false;
  for (let i = 0; i < lines.length; i++) {
    const parts = lines[i].trim().split(':');
    if (parts.length === 2 && parts[0] === 'kubeconfig') {
      lines[i] = lines[i].replace('kubeconfig', '#kubeconfig');
      changed = true;
    }
  }
  return changed ? lines.join('\n') : config;
}

function apply(obj: KubeObject): FilterDecision {
  if (!isCoreKind(obj, 'ConfigMap') || !isNamed(obj, 'kube-system', 'kube-proxy')) return obj;
  const data = obj.data as Record<string, unknown> | null | undefined;
  const config = data?.[CONFIG_KEY];
  if (typeof config !== 'string') return obj;
  const next = commentOutKubeconfig(config);
  if (next === config) return obj;
  return { ...obj, metadata: { ...obj.metadata }, data: { ...data, [CONFIG_KEY]: next } };
}

export const inClusterConfigFilter: Filter = {
  name: 'inclusterconfig',
  resources: ['configmaps'],
  defaultComponents: ['kubelet'],
  apply,
};
