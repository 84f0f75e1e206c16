// discardcloudservice: the other_filters cases DC-* and the watch_events cases W-01..W-03 (the chain
// decisions; how a drop reaches a watch is the view engine's, test/views/kubelet-filters.test.ts).
import { describe, expect, it } from 'vitest';
import { discardCloudServiceFilter as filter } from '../../filters/discardcloudservice.js';
import { nodePortIsolationFilter } from '../../filters/nodeportisolation.js';
import { applyChain, type Filter } from '../../filters/types.js';
import { type SpecCase, loadSpec, makeScope, nodePortService, otherFilterObject, runOtherFilterCases } from './spec-scope.js';

describe('discardcloudservice spec cases', () => runOtherFilterCases(filter));

describe('watch_events spec cases with discardcloudservice (chain decision per event object)', () => {
  const byName: Record<string, Filter> = { discardcloudservice: filter, nodeportisolation: nodePortIsolationFilter };
  for (const c of (loadSpec().watch_events as SpecCase[]).filter((w) => w.chain.includes('discardcloudservice'))) {
    it(`${c.id}: ${c.test}`, () => {
      const obj = nodePortService(c.input_event.object);
      const out = applyChain(c.chain.map((n: string) => byName[n]), obj, makeScope({ nodePool: 'foo' }));
      // DELETED = the object leaves the view; otherwise the very object passes.
      if (c.expect_event.type === 'DELETED') expect(out).toBeNull();
      else expect(out).toBe(obj);
    });
  }
});

describe('discardcloudservice', () => {
  it('targets kube-proxy on services, as yurt-hub', () => {
    expect(filter.resources).toEqual(['services']);
    expect(filter.defaultComponents).toEqual(['kube-proxy']);
  });

  it('only LoadBalancer Services with the annotation exactly "true" are dropped (v1.5+ rule)', () => {
    const scope = makeScope({});
    const svc = (type: string, annotations: Record<string, string>) => otherFilterObject({ kind: 'Service', type, annotations });
    expect(filter.apply(svc('LoadBalancer', { 'svc.openyurt.io/discard': 'true' }), scope)).toBeNull();
    for (const kept of [
      svc('NodePort', { 'svc.openyurt.io/discard': 'true' }),
      svc('ClusterIP', { 'svc.openyurt.io/discard': 'true' }),
      svc('LoadBalancer', { 'svc.openyurt.io/discard': 'false' }),
      svc('LoadBalancer', { 'svc.openyurt.io/discard': 'True' }),
      svc('LoadBalancer', { 'openyurt.io/skip-discard': 'false' }),
    ]) {
      expect(filter.apply(kept, scope)).toBe(kept);
    }
  });

  it('x-tunnel-server-internal-svc only in kube-system', () => {
    const other = otherFilterObject({ kind: 'Service', namespace: 'default', name: 'x-tunnel-server-internal-svc' });
    expect(filter.apply(other, makeScope({}))).toBe(other);
  });
});
