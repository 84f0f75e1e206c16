// The built-in filters, in registration order (the order chains are applied in).

import { nodePortIsolationFilter } from './nodeportisolation.js';
import { serviceTopologyFilter } from './servicetopology.js';
import type { Filter } from './types.js';

export { nodePortIsolationFilter } from './nodeportisolation.js';
export { serviceTopologyFilter } from './servicetopology.js';
export type { Filter, FilterDecision, KubeObject, Scope } from './types.js';
export { applyChain } from './types.js';

export const builtinFilters: readonly Filter[] = Object.freeze([serviceTopologyFilter, nodePortIsolationFilter]);

const byName: ReadonlyMap<string, Filter> = new Map(builtinFilters.map((f) => [f.name, f]));

/** A built-in filter by its yurt-hub name (e.g. "servicetopology"). */
export function filterByName(name: string): Filter | undefined {
  return byName.get(name);
}
