// masterservice: the other_filters cases MS-* of test/fixtures/openyurt-cases.yaml, plus the rest of
// the rules from yurt-hub's filter (cluster IP families, no address, other Services).
import { describe, expect, it } from 'vitest';
import { masterServiceFilter as filter } from '../../filters/masterservice.js';
import { addressScope, makeScope, otherFilterObject, runOtherFilterCases } from './spec-scope.js';

const kubernetes = (fields: Record<string, unknown> = {}) =>
  otherFilterObject({ kind: 'Service', namespace: 'default', name: 'kubernetes', clusterIP: '10.96.0.1', ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: 6443 }], ...fields });

describe('masterservice spec cases', () => runOtherFilterCases(filter));

describe('masterservice', () => {
  it('targets the kubelet on services, as yurt-hub', () => {
    expect(filter.resources).toEqual(['services']);
    expect(filter.defaultComponents).toEqual(['kubelet']);
  });

  it('replaces every cluster IP (dual stack too) by the one address and only the https port', () => {
    const svc = kubernetes({ clusterIPs: ['10.96.0.1', 'fd00:10:96::1'], ports: [{ name: 'https', port: 443, targetPort: 6443 }, { name: 'metrics', port: 9000 }] });
    const out = filter.apply(svc, addressScope({ host: '10.0.0.5', securePort: 10443 }))!;
    expect(out.spec).toEqual({ ...(svc.spec as object), clusterIP: '10.0.0.5', clusterIPs: ['10.0.0.5'], ports: [{ name: 'https', port: 10443, targetPort: 6443 }, { name: 'metrics', port: 9000 }] });
    expect(out.metadata).toEqual(svc.metadata);
  });

  it('an already rewritten Service is kept as it is (no needless copy)', () => {
    const svc = kubernetes({ clusterIP: '169.254.2.1', ports: [{ name: 'https', port: 10268 }] });
    expect(filter.apply(svc, addressScope())).toBe(svc);
  });

  it('without poolview address (no secure port), other namespaces and other kinds: unchanged', () => {
    const svc = kubernetes();
    expect(filter.apply(svc, makeScope({}))).toBe(svc);
    const other = otherFilterObject({ kind: 'Service', namespace: 'kube-system', name: 'kubernetes' });
    expect(filter.apply(other, addressScope())).toBe(other);
    const slice = otherFilterObject({ kind: 'EndpointSlice', namespace: 'default', name: 'kubernetes', addressType: 'IPv4' });
    expect(filter.apply(slice, addressScope())).toBe(slice);
  });
});
