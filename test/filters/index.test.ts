import { describe, expect, it } from 'vitest';
import { builtinFilters, filterByName } from '../../filters/index.js';
import { nodePortIsolationFilter } from '../../filters/nodeportisolation.js';
import { serviceTopologyFilter } from '../../filters/servicetopology.js';
import { applyChain } from '../../filters/types.js';
import { endpointSlice, makeScope, nodePortService, topologyService } from './spec-scope.js';

describe('built-in filters', () => {
  it('are registered in yurt-hub order', () => {
    expect(builtinFilters.map((f) => f.name)).toEqual(['servicetopology', 'nodeportisolation']);
    expect(Object.isFrozen(builtinFilters)).toBe(true);
  });

  it('are found by name', () => {
    expect(filterByName('servicetopology')).toBe(serviceTopologyFilter);
    expect(filterByName('nodeportisolation')).toBe(nodePortIsolationFilter);
    expect(filterByName('masterservice')).toBeUndefined();
  });

  it('chain: each filter leaves the other resource alone (same object through the chain)', () => {
    const scope = makeScope({ nodePool: 'foo', services: [topologyService('kubernetes.io/hostname')] });
    const svc = nodePortService({ type: 'NodePort', listen: 'foo' });
    expect(applyChain(builtinFilters, svc, scope)).toBe(svc);
    const slice = endpointSlice({ endpoints: [{ ip: '1', node: 'node1' }] });
    expect(applyChain(builtinFilters, slice, scope)).toBe(slice);
    expect(applyChain(builtinFilters, nodePortService({ type: 'NodePort', listen: '-foo' }), scope)).toBeNull();
  });
});
