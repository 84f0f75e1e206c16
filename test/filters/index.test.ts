import { describe, expect, it } from 'vitest';
import { EDGE_ONLY_FILTERS, builtinFilters, enabledFilters, filterByName } from '../../filters/index.js';
import { nodePortIsolationFilter } from '../../filters/nodeportisolation.js';
import { serviceTopologyFilter } from '../../filters/servicetopology.js';
import { applyChain } from '../../filters/types.js';
import { addressScope, endpointSlice, makeScope, nodePortService, otherFilterObject, topologyService } from './spec-scope.js';

const ALL = ['servicetopology', 'masterservice', 'discardcloudservice', 'inclusterconfig', 'nodeportisolation', 'forwardkubesvctraffic', 'serviceenvupdater'];

describe('built-in filters', () => {
  it('are registered in yurt-hub order', () => {
    expect(builtinFilters.map((f) => f.name)).toEqual(ALL);
    expect(Object.isFrozen(builtinFilters)).toBe(true);
  });

  it('are found by name', () => {
    expect(filterByName('servicetopology')).toBe(serviceTopologyFilter);
    expect(filterByName('nodeportisolation')).toBe(nodePortIsolationFilter);
    for (const name of ALL) expect(filterByName(name)?.name).toBe(name);
    expect(filterByName('hostnetworkpropagation')).toBeUndefined();
  });

  it('chain: each filter leaves the other resources alone (same object through the chain)', () => {
    const scope = makeScope({ nodePool: 'foo', services: [topologyService('kubernetes.io/hostname')] });
    const svc = nodePortService({ type: 'NodePort', listen: 'foo' });
    expect(applyChain(builtinFilters, svc, scope)).toBe(svc);
    const slice = endpointSlice({ endpoints: [{ ip: '1', node: 'node1' }] });
    expect(applyChain(builtinFilters, slice, scope)).toBe(slice);
    expect(applyChain(builtinFilters, nodePortService({ type: 'NodePort', listen: '-foo' }), scope)).toBeNull();
    const withAddress = addressScope();
    for (const obj of [
      otherFilterObject({ kind: 'Pod', containers: [{ env: [{ name: 'A', value: 'b' }] }] }),
      otherFilterObject({ kind: 'ConfigMap', namespace: 'kube-system', name: 'other', data: { 'config.conf': 'kubeconfig: x' } }),
      otherFilterObject({ kind: 'Service', namespace: 'default', name: 'web' }),
    ]) {
      expect(applyChain(builtinFilters, obj, withAddress)).toBe(obj);
    }
  });
});

describe('enabledFilters (--disabled-filters, --working-mode)', () => {
  const names = (d: string[], mode: 'edge' | 'cloud') => enabledFilters(d, mode).map((f) => f.name);

  it('edge: all; named ones off; * alone or among names: none', () => {
    expect(names([], 'edge')).toEqual(ALL);
    expect(names(['masterservice', 'inclusterconfig'], 'edge')).toEqual(ALL.filter((n) => n !== 'masterservice' && n !== 'inclusterconfig'));
    expect(names(['*'], 'edge')).toEqual([]);
    expect(names(['servicetopology', '*'], 'edge')).toEqual([]);
  });

  it('cloud: the edge-only filters are off, as yurt-hub (CFG-16); * still means all (CFG-18 differs on purpose)', () => {
    expect(EDGE_ONLY_FILTERS).toEqual(['discardcloudservice', 'forwardkubesvctraffic', 'serviceenvupdater']);
    expect(names([], 'cloud')).toEqual(['servicetopology', 'masterservice', 'inclusterconfig', 'nodeportisolation']);
    expect(names(['masterservice'], 'cloud')).toEqual(['servicetopology', 'inclusterconfig', 'nodeportisolation']);
    expect(names(['*'], 'cloud')).toEqual([]);
  });
});
