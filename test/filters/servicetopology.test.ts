// servicetopology: every case of test/fixtures/openyurt-cases.yaml sections `servicetopology` and
// `servicetopology_list`, plus unit tests of the contract (identity, no mutation, shapes).
//
// Spec cases of the view engine:
//   - STW-D1 (servicetopology_watch): the watch event TYPE is the view engine's (docs/design.md, view
//     contract rule 2), checked through poolview in test/views/spec-cases.test.ts. Its filter-level
//     half is checked here: the slice comes back emptied, never null.
//
// Cases where poolview differs from yurt-hub HEAD on purpose:
//   - ST-25, ST-26, ST-28, ST-29, ST-31 (core/v1 Endpoints): yurt-hub >= v1.7 passes Endpoints through;
//     docs/design.md §6 (compatibility): "core/v1 Endpoints are filtered by servicetopology
//     (ingress controllers and older coredns read them)". The spec's expectations (from v1.6.1) are exactly our behaviour.
//   - Emptied slices carry `endpoints: []` (yurt-hub: Go nil → JSON null); docs/design.md §6:
//     "EndpointSlices are never dropped for topology, only emptied".

import { describe, expect, it } from 'vitest';
import { serviceTopologyFilter as filter } from '../../filters/servicetopology.js';
import type { KubeObject } from '../../filters/types.js';
import {
  type SpecCase,
  endpointSlice,
  endpointsObject,
  loadSpec,
  makeScope,
  scopeFor,
  sliceIps,
  topologyService,
  without,
  NAMESPACE,
  TRIGGER_TIME,
} from './spec-scope.js';

const spec = loadSpec();
const cases: SpecCase[] = spec.servicetopology;

/** Applies the filter and checks the contract every result must keep. */
function run(input: KubeObject, scope: ReturnType<typeof scopeFor>): KubeObject {
  const before = structuredClone(input);
  const out = filter.apply(input, scope);
  expect(input, 'input must not be mutated').toEqual(before);
  expect(out, 'servicetopology never drops an object').not.toBeNull();
  return out as KubeObject;
}

function isEndpoints(c: SpecCase): boolean {
  return c.input.kind === 'Endpoints';
}

/** ST-22/ST-23 give the filtering mode directly (yurt-hub's reassemble helper). */
function modeScope(c: SpecCase) {
  const mode = c.input.mode;
  if (mode.nodes) {
    return {
      scope: makeScope({ nodeName: 'node1', nodePool: 'pool', pools: { pool: mode.nodes }, services: [topologyService('openyurt.io/nodepool')] }),
    };
  }
  return { scope: makeScope({ nodeName: mode.nodeName, services: [topologyService('kubernetes.io/hostname')] }) };
}

describe('servicetopology spec cases', () => {
  it('covers every servicetopology case id', () => {
    expect(cases.length).toBeGreaterThan(20);
  });

  for (const c of cases) {
    it(`${c.id}: ${c.source?.test ?? c.note ?? ''}`, () => {
      const scope = c.input.mode ? modeScope(c).scope : scopeFor(c, { services: [topologyService(c.cluster?.serviceAnnotation)] });
      const input = isEndpoints(c) ? endpointsObject(c.input) : endpointSlice({ kind: 'EndpointSlice', ...c.input });
      const out = run(input, scope);

      if (c.expect.result === 'unchanged') expect(out).toBe(input);

      if (c.expect.endpoints !== undefined) {
        expect(sliceIps(out)).toEqual(c.expect.endpoints);
        expect(Array.isArray(out.endpoints), 'emptied, not null').toBe(true);
        // Everything the filter does not own is untouched.
        expect(without(out, 'endpoints')).toEqual(without(input, 'endpoints'));
        if (c.expect.endpoints.length === (input.endpoints as unknown[]).length) expect(out).toBe(input);
        else expect(out).not.toBe(input);
      }

      if (c.expect.subsets !== undefined) {
        if (c.expect.subsets === 'absent') {
          expect('subsets' in out).toBe(false);
        } else {
          const got = (out.subsets as { addresses: { ip: string }[] }[]).map((s) => ({ addresses: s.addresses.map((a) => a.ip) }));
          expect(got).toEqual(c.expect.subsets);
        }
        expect(without(out, 'subsets')).toEqual(without(input, 'subsets'));
      }
    });
  }
});

describe('servicetopology_list spec cases (filter applied per item; list plumbing is elsewhere)', () => {
  for (const c of spec.servicetopology_list as SpecCase[]) {
    it(`${c.id}: ${c.test}`, () => {
      const scope = scopeFor(c, { services: [topologyService(c.cluster?.serviceAnnotation)] });
      // List items arrive without kind/apiVersion; the filter must recognise them by shape.
      const items = (c.input.items as Record<string, unknown>[]).map((i) =>
        endpointSlice(i, { apiVersion: c.input.apiVersion, typeMeta: false }),
      );
      const kept = items.map((i) => run(i, scope));
      expect(kept.map((i) => ({ name: i.metadata.name, endpoints: sliceIps(i) }))).toEqual(c.expect.items);
    });
  }
});

describe('servicetopology_watch spec cases (filter-level half only)', () => {
  for (const c of spec.servicetopology_watch as SpecCase[]) {
    it(`${c.id}: filter returns the slice emptied, never null (event type: view engine)`, () => {
      const scope = scopeFor(c, { services: [topologyService(c.cluster?.serviceAnnotation)] });
      const out = run(endpointSlice(c.input_event.object), scope);
      expect(sliceIps(out)).toEqual(c.expect_event.endpoints);
    });
  }
});

describe('servicetopology contract', () => {
  const hostname = topologyService('kubernetes.io/hostname');
  const pool = topologyService('openyurt.io/nodepool');
  const slice = (endpoints: { ip: string; node: string | null }[], apiVersion = 'discovery.k8s.io/v1') =>
    endpointSlice({ apiVersion, endpoints });

  it('has the yurt-hub name, resources and default components', () => {
    expect(filter.name).toBe('servicetopology');
    expect([...filter.resources].sort()).toEqual(['endpoints', 'endpointslices']);
    expect([...filter.defaultComponents].sort()).toEqual(['coredns', 'kube-proxy', 'nginx-ingress-controller']);
  });

  it('returns the same object when filtering applies but removes nothing', () => {
    const input = slice([{ ip: '10.0.0.1', node: 'node1' }]);
    expect(filter.apply(input, makeScope({ services: [hostname] }))).toBe(input);
    const ep = endpointsObject({ subsets: [{ addresses: [{ ip: '10.0.0.1', node: 'node1' }] }] });
    expect(filter.apply(ep, makeScope({ services: [hostname] }))).toBe(ep);
  });

  it('keeps ports, conditions, hints, annotations and order; copies instead of mutating', () => {
    const input = slice([
      { ip: '10.0.0.3', node: 'node2' },
      { ip: '10.0.0.1', node: 'node1' },
      { ip: '10.0.0.2', node: 'node1' },
    ]);
    (input.endpoints as Record<string, unknown>[])[1].hints = { forZones: [{ name: 'z1' }] };
    const before = structuredClone(input);
    const out = filter.apply(input, makeScope({ services: [hostname] }))!;
    expect(input).toEqual(before);
    expect(out).not.toBe(input);
    expect(out.metadata).not.toBe(input.metadata);
    expect(sliceIps(out)).toEqual(['10.0.0.1', '10.0.0.2']);
    expect((out.endpoints as Record<string, unknown>[])[0]).toEqual((before.endpoints as Record<string, unknown>[])[1]);
    expect(out.metadata.annotations?.['endpoints.kubernetes.io/last-change-trigger-time']).toBe(TRIGGER_TIME);
    expect(out.ports).toEqual(before.ports);
  });

  it('empties a slice with no endpoint in scope to endpoints: []', () => {
    const out = filter.apply(slice([{ ip: '10.0.0.3', node: 'node2' }]), makeScope({ services: [hostname] }))!;
    expect(out.endpoints).toEqual([]);
  });

  it('drops endpoints without a node (v1 nodeName, v1beta1 topology hostname)', () => {
    const scope = makeScope({ nodePool: 'p', pools: { p: ['node1', 'node2'] }, services: [pool] });
    const v1 = filter.apply(slice([{ ip: '1', node: null }, { ip: '2', node: 'node2' }]), scope)!;
    expect(sliceIps(v1)).toEqual(['2']);
    const beta = filter.apply(slice([{ ip: '1', node: null }, { ip: '2', node: 'node1' }], 'discovery.k8s.io/v1beta1'), scope)!;
    expect(sliceIps(beta)).toEqual(['2']);
  });

  it('reads v1beta1 topology, not nodeName, first', () => {
    const input = slice([{ ip: '1', node: 'node1' }], 'discovery.k8s.io/v1beta1');
    (input.endpoints as Record<string, unknown>[])[0].nodeName = 'node2';
    expect(filter.apply(input, makeScope({ services: [hostname] }))).toBe(input);
  });

  it('fails open: no Service, no label, unknown value, unknown pool members', () => {
    const input = slice([{ ip: '1', node: 'node2' }]);
    expect(filter.apply(input, makeScope({}))).toBe(input);
    expect(filter.apply(input, makeScope({ services: [topologyService('')] }))).toBe(input);
    expect(filter.apply(input, makeScope({ services: [topologyService('kubernetes.io/region')] }))).toBe(input);
    expect(filter.apply(input, makeScope({ nodePool: 'p', services: [pool] }))).toBe(input);
    const unlabelled = endpointSlice({ endpoints: [{ ip: '1', node: 'node2' }], labels: {} });
    expect(filter.apply(unlabelled, makeScope({ services: [hostname] }))).toBe(unlabelled);
  });

  it('looks the Service up in the object namespace', () => {
    const other = { ...hostname, metadata: { ...hostname.metadata, namespace: 'other' } };
    const input = slice([{ ip: '1', node: 'node2' }]);
    expect(filter.apply(input, makeScope({ services: [other] }))).toBe(input);
  });

  it('falls back to hostname scope for a node in no pool (zone key too)', () => {
    const input = slice([{ ip: '1', node: 'node1' }, { ip: '2', node: 'node3' }]);
    const out = filter.apply(input, makeScope({ pools: { p: ['node1', 'node3'] }, services: [topologyService('kubernetes.io/zone')] }))!;
    expect(sliceIps(out)).toEqual(['1']);
  });

  it('leaves other kinds and API groups alone', () => {
    const pod: KubeObject = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'svc1', namespace: NAMESPACE } };
    expect(filter.apply(pod, makeScope({ services: [hostname] }))).toBe(pod);
    const foreign = { ...slice([{ ip: '1', node: 'node2' }]), apiVersion: 'example.com/v1' };
    expect(filter.apply(foreign, makeScope({ services: [hostname] }))).toBe(foreign);
    const nullEndpoints = { ...slice([]), endpoints: null };
    expect(filter.apply(nullEndpoints, makeScope({ services: [hostname] }))).toBe(nullEndpoints);
  });

  describe('core/v1 Endpoints', () => {
    const scope = makeScope({ services: [hostname] });
    it('filters addresses and notReadyAddresses, removes emptied subsets, keeps the rest', () => {
      const input: KubeObject = {
        apiVersion: 'v1',
        kind: 'Endpoints',
        metadata: { name: 'svc1', namespace: NAMESPACE, annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': TRIGGER_TIME } },
        subsets: [
          {
            addresses: [{ ip: 'a', nodeName: 'node1' }, { ip: 'b', nodeName: 'node2' }],
            notReadyAddresses: [{ ip: 'c', nodeName: 'node2' }],
            ports: [{ port: 80 }],
          },
          { addresses: [{ ip: 'd' }], ports: [{ port: 81 }] },
          { notReadyAddresses: [{ ip: 'e', nodeName: 'node1' }], ports: [{ port: 82 }] },
        ],
      };
      const before = structuredClone(input);
      const out = filter.apply(input, scope)!;
      expect(input).toEqual(before);
      expect(out.subsets).toEqual([
        { addresses: [{ ip: 'a', nodeName: 'node1' }], ports: [{ port: 80 }] },
        { notReadyAddresses: [{ ip: 'e', nodeName: 'node1' }], ports: [{ port: 82 }] },
      ]);
      expect((out.subsets as unknown[])[1]).toBe((input.subsets as unknown[])[2]);
      expect(out.metadata).toEqual(input.metadata);
    });

    it('recognises list items (no kind) by shape', () => {
      const { apiVersion: _a, kind: _k, ...item } = endpointsObject({ subsets: [{ addresses: [{ ip: 'x', node: 'node2' }] }] });
      const out = filter.apply(item as KubeObject, scope)!;
      expect('subsets' in out).toBe(false);
    });
  });
});
