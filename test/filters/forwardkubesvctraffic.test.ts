// forwardkubesvctraffic: the other_filters cases FK-*, plus IPv6, the one warning on a family
// mismatch, and objects it must leave alone.
import { describe, expect, it } from 'vitest';
import { forwardKubeSvcTrafficFilter as filter } from '../../filters/forwardkubesvctraffic.js';
import { addressScope, makeScope, otherFilterObject, runOtherFilterCases } from './spec-scope.js';

describe('forwardkubesvctraffic spec cases', () => runOtherFilterCases(filter));

const kubernetesSlice = (addressType: string) =>
  otherFilterObject({
    kind: 'EndpointSlice',
    namespace: 'default',
    name: 'kubernetes',
    addressType,
    endpoints: [{ addresses: ['172.16.0.10'], conditions: { ready: true } }],
    ports: [{ name: 'https', port: 6443, protocol: 'TCP' }],
  });

describe('forwardkubesvctraffic', () => {
  it('targets kube-proxy on endpointslices, as yurt-hub', () => {
    expect(filter.resources).toEqual(['endpointslices']);
    expect(filter.defaultComponents).toEqual(['kube-proxy']);
  });

  it('IPv6 slice, IPv6 address: one ready endpoint at poolview', () => {
    const out = filter.apply(kubernetesSlice('IPv6'), addressScope({ host: 'fd00::2:1', securePort: 10268 }))!;
    expect(out.endpoints).toEqual([{ addresses: ['fd00::2:1'], conditions: { ready: true } }]);
    expect(out.ports).toEqual([{ name: 'https', port: 10268, protocol: 'TCP' }]);
  });

  it('family mismatch: unchanged, warned once however often it is seen', () => {
    const scope = addressScope({ host: '169.254.2.1' });
    const slice = kubernetesSlice('IPv6');
    expect(filter.apply(slice, scope)).toBe(slice);
    expect(filter.apply(kubernetesSlice('IPv6'), scope)).not.toBeNull();
    expect(scope.warnings).toHaveLength(1);
    expect(scope.warnings[0]).toContain('IPv6');
  });

  it('other slices, no address, other kinds: unchanged', () => {
    const other = otherFilterObject({ kind: 'EndpointSlice', namespace: 'default', name: 'kubernetes-x', addressType: 'IPv4' });
    expect(filter.apply(other, addressScope())).toBe(other);
    const slice = kubernetesSlice('IPv4');
    expect(filter.apply(slice, makeScope({}))).toBe(slice);
    const svc = otherFilterObject({ kind: 'Service', namespace: 'default', name: 'kubernetes' });
    expect(filter.apply(svc, addressScope())).toBe(svc);
  });
});
