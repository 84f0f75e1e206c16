// The built-in filters, in yurt-hub's registration order (the order chains are applied in), and
// which of them run: `--disabled-filters` and the working mode.

import { discardCloudServiceFilter } from './discardcloudservice.js';
import { forwardKubeSvcTrafficFilter } from './forwardkubesvctraffic.js';
import { inClusterConfigFilter } from './inclusterconfig.js';
import { masterServiceFilter } from './masterservice.js';
import { nodePortIsolationFilter } from './nodeportisolation.js';
import { serviceEnvUpdaterFilter } from './serviceenvupdater.js';
import { serviceTopologyFilter } from './servicetopology.js';
import type { Filter } from './types.js';

export { discardCloudServiceFilter } from './discardcloudservice.js';
export { forwardKubeSvcTrafficFilter } from './forwardkubesvctraffic.js';
export { inClusterConfigFilter } from './inclusterconfig.js';
export { masterServiceFilter } from './masterservice.js';
export { nodePortIsolationFilter } from './nodeportisolation.js';
export { serviceEnvUpdaterFilter } from './serviceenvupdater.js';
export { serviceTopologyFilter } from './servicetopology.js';
export type { Filter, FilterDecision, KubeObject, ProxyAddress, Scope } from './types.js';
export { applyChain } from './types.js';

export const builtinFilters: readonly Filter[] = Object.freeze([
  serviceTopologyFilter,
  masterServiceFilter,
  discardCloudServiceFilter,
  inClusterConfigFilter,
  nodePortIsolationFilter,
  forwardKubeSvcTrafficFilter,
  serviceEnvUpdaterFilter,
]);

const byName: ReadonlyMap<string, Filter> = new Map(builtinFilters.map((f) => [f.name, f]));

/** A built-in filter by its yurt-hub name (e.g. "servicetopology"). */
export function filterByName(name: string): Filter | undefined {
  return byName.get(name);
}

export type WorkingMode = 'edge' | 'cloud';

/** Filters that only make sense on edge nodes; yurt-hub turns them off in cloud working mode. */
export const EDGE_ONLY_FILTERS: readonly string[] = Object.freeze(['discardcloudservice', 'forwardkubesvctraffic', 'serviceenvupdater']);

/**
 * The filters that run: all built-in ones but those disabled (`*` alone or among names: all) and,
 * in cloud mode, the edge-only ones. Names are checked by the caller (options).
 */
export function enabledFilters(disabled: readonly string[], workingMode: WorkingMode): readonly Filter[] {
  if (disabled.includes('*')) return Object.freeze([]);
  const off = new Set([...disabled, ...(workingMode === 'cloud' ? EDGE_ONLY_FILTERS : [])]);
  return Object.freeze(builtinFilters.filter((f) => !off.has(f.name)));
}
