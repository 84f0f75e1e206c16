// nodeportisolation: every case of test/fixtures/openyurt-cases.yaml sections `nodeportisolation`
// and `nodeportisolation_list`, plus the auto-listen rules and the filter contract.
//
// Spec cases of the view engine, run through poolview in test/views/spec-cases.test.ts:
//   - W-01, W-02, W-03, W-D1, W-D2 (watch_events): watch event types (DELETED synthesis, BOOKMARK/ERROR
//     pass-through) are the view engine's; poolview also differs on purpose there (docs/design.md
//     §6, "Transitions": yurt-hub sends a DELETED also for objects the client never had). W-01/W-02 also need discardcloudservice, not a filter of this module.
//   - seed_scenario: an event sequence for the view engine (docs/design.md, view contract rules 2-3).
//     Its filter-level fact (listen `pool1` drops the Service for a pool2 node, keeps it for pool1 and
//     for an orphan node) is checked below too.
//
// The nodeportisolation_list cases carry no config; the node's pool is taken to be `foo`, the only
// pool consistent with their outcomes (yurt-hub's list test runs with pool foo).

import { describe, expect, it } from 'vitest';
import { listensIn, nodePortIsolationFilter as filter } from '../../filters/nodeportisolation.js';
import type { KubeObject } from '../../filters/types.js';
import { type SpecCase, loadSpec, makeScope, nodePortService, scopeFor } from './spec-scope.js';

const spec = loadSpec();

function run(input: KubeObject, scope: ReturnType<typeof makeScope>): KubeObject | null {
  const before = structuredClone(input);
  const out = filter.apply(input, scope);
  expect(input, 'input must not be mutated').toEqual(before);
  if (out !== null) expect(out, 'nodeportisolation keeps the very same object').toBe(input);
  return out;
}

function caseInput(c: SpecCase): KubeObject {
  if (c.input.kind === 'Service') return nodePortService(c.input);
  // Anything else (NPI-10: a PodList) is passed as the spec gives it.
  return {
    apiVersion: 'v1',
    kind: c.input.kind,
    metadata: { resourceVersion: '1' },
    items: (c.input.items ?? []).map((i: Record<string, string>) => ({ metadata: { name: i.name, namespace: i.namespace } })),
  };
}

describe('nodeportisolation spec cases', () => {
  for (const c of spec.nodeportisolation as SpecCase[]) {
    it(`${c.id}: ${c.source?.test ?? c.expect.note ?? ''}`, () => {
      const input = caseInput(c);
      const out = run(input, scopeFor(c));
      if (c.expect.result === 'dropped') expect(out).toBeNull();
      else expect(out).toBe(input); // kept / unchanged
    });
  }
});

describe('nodeportisolation_list spec cases (filter applied per item; list plumbing is elsewhere)', () => {
  for (const c of spec.nodeportisolation_list as SpecCase[]) {
    it(`${c.id}: ${c.test}`, () => {
      const scope = scopeFor(c, { nodePool: 'foo' });
      // List items arrive without kind/apiVersion.
      const items = (c.input.items as Record<string, unknown>[]).map((i) => nodePortService(i, { typeMeta: false }));
      const kept = items.map((i) => run(i, scope)).filter((i): i is KubeObject => i !== null);
      expect(kept.map((i) => i.metadata.name)).toEqual(c.expect.items);
    });
  }
});

describe('seed_scenario, filter level', () => {
  const svc = nodePortService({ name: 'web', type: 'NodePort', listen: 'pool1' });
  it('listen shrunk to pool1: gone for pool2, kept for pool1 and orphan nodes', () => {
    expect(run(svc, makeScope({ nodePool: 'pool2' }))).toBeNull();
    expect(run(svc, makeScope({ nodePool: 'pool1' }))).toBe(svc);
    expect(run(svc, makeScope({}))).toBe(svc);
  });
});

describe('listen grammar', () => {
  const table: [string, string, boolean][] = [
    ['foo,bar', 'foo', true],
    ['foo,bar', 'baz', false],
    ['foo,*', 'baz', true],
    ['-foo,-bar', 'foo', false],
    ['-foo,-bar', 'baz', false],
    ['-foo,*', 'foo', false],
    ['-foo,*', 'bar', true],
    ['foo,-foo', 'foo', true],
    ['-foo,foo', 'foo', false],
    ['*,-foo', 'foo', false],
    ['-foo', 'foo', false],
    ['', 'foo', false],
    ['  ', 'foo', false],
    [' bar , foo ', 'foo', true],
    ['FOO', 'foo', false],
    ['-*', 'foo', false],
    [',,foo,', 'foo', true],
    ['*', 'foo', true],
  ];
  for (const [listen, pool, enabled] of table) {
    it(`${JSON.stringify(listen)} for pool ${pool} → ${enabled ? 'listens' : 'does not listen'}`, () => {
      expect(listensIn(listen, pool)).toBe(enabled);
    });
  }
});

describe('nodeportisolation contract', () => {
  it('has the yurt-hub name, resources and default components', () => {
    expect(filter.name).toBe('nodeportisolation');
    expect(filter.resources).toEqual(['services']);
    expect(filter.defaultComponents).toEqual(['kube-proxy']);
  });

  it('considers only NodePort and LoadBalancer Services', () => {
    const scope = makeScope({ nodePool: 'foo' });
    for (const type of ['ClusterIP', 'ExternalName', undefined]) {
      const svc = nodePortService({ type, listen: '-foo' });
      if (type === undefined) delete (svc.spec as Record<string, unknown>).type;
      expect(run(svc, scope)).toBe(svc);
    }
    expect(run(nodePortService({ type: 'LoadBalancer', listen: '-foo' }), scope)).toBeNull();
  });

  it('leaves other kinds alone', () => {
    const scope = makeScope({ nodePool: 'foo' });
    const ep = { ...nodePortService({ type: 'NodePort', listen: '-foo' }), kind: 'Endpoints' };
    expect(run(ep, scope)).toBe(ep);
    const foreign = { ...nodePortService({ type: 'NodePort', listen: '-foo' }), apiVersion: 'example.com/v1' };
    expect(run(foreign, scope)).toBe(foreign);
  });

  it('an orphan node sees every Service', () => {
    const svc = nodePortService({ type: 'NodePort', listen: '' });
    expect(run(svc, makeScope({}))).toBe(svc);
  });
});

describe('auto-listen (gate NodePortAutoListen)', () => {
  const key = 'default/svc1';
  const auto = (value: string, extra: Record<string, string> = {}) =>
    nodePortService({ type: 'NodePort' }, { annotations: { 'nodeport.openyurt.io/auto-listen': value, ...extra } });
  const on = { NodePortAutoListen: true };

  it('keeps the Service where its endpoints run in this pool', () => {
    const svc = auto('true');
    expect(run(svc, makeScope({ nodePool: 'foo', gates: on, endpointPools: { [key]: ['bar', 'foo'] } }))).toBe(svc);
  });

  it('drops it where they do not (including no endpoints at all)', () => {
    expect(run(auto('true'), makeScope({ nodePool: 'foo', gates: on, endpointPools: { [key]: ['bar'] } }))).toBeNull();
    expect(run(auto('true'), makeScope({ nodePool: 'foo', gates: on, endpointPools: { [key]: [] } }))).toBeNull();
  });

  it('fails open while the endpoint pools are unknown', () => {
    const svc = auto('true');
    expect(run(svc, makeScope({ nodePool: 'foo', gates: on }))).toBe(svc);
  });

  it('does nothing with the gate off', () => {
    const svc = auto('true');
    expect(run(svc, makeScope({ nodePool: 'foo', endpointPools: { [key]: ['bar'] } }))).toBe(svc);
  });

  it('an explicit listen annotation wins, whatever the endpoints', () => {
    const listens = auto('true', { 'nodeport.openyurt.io/listen': 'foo' });
    expect(run(listens, makeScope({ nodePool: 'foo', gates: on, endpointPools: { [key]: ['bar'] } }))).toBe(listens);
    const closed = auto('true', { 'nodeport.openyurt.io/listen': '-foo' });
    expect(run(closed, makeScope({ nodePool: 'foo', gates: on, endpointPools: { [key]: ['foo'] } }))).toBeNull();
    const empty = auto('true', { 'nodeport.openyurt.io/listen': '' });
    expect(run(empty, makeScope({ nodePool: 'foo', gates: on, endpointPools: { [key]: ['foo'] } }))).toBeNull();
  });

  it('auto-listen "false" (or anything but "true") means no auto-listen', () => {
    for (const value of ['false', '', 'yes']) {
      const svc = auto(value);
      expect(run(svc, makeScope({ nodePool: 'foo', gates: on, endpointPools: { [key]: ['bar'] } }))).toBe(svc);
    }
  });

  it('an orphan node sees the Service', () => {
    const svc = auto('true');
    expect(run(svc, makeScope({ gates: on, endpointPools: { [key]: ['bar'] } }))).toBe(svc);
  });

  it('applies to LoadBalancer, not ClusterIP', () => {
    const scope = makeScope({ nodePool: 'foo', gates: on, endpointPools: { [key]: ['bar'] } });
    const lb = nodePortService({ type: 'LoadBalancer' }, { annotations: { 'nodeport.openyurt.io/auto-listen': 'true' } });
    expect(run(lb, scope)).toBeNull();
    const cip = nodePortService({ type: 'ClusterIP' }, { annotations: { 'nodeport.openyurt.io/auto-listen': 'true' } });
    expect(run(cip, scope)).toBe(cip);
  });
});
