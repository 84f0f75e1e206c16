// serviceenvupdater: the other_filters cases SE-*, plus: every container, never init containers,
// only variables that exist, no address → unchanged.
import { describe, expect, it } from 'vitest';
import { serviceEnvUpdaterFilter as filter } from '../../filters/serviceenvupdater.js';
import { addressScope, makeScope, otherFilterObject, runOtherFilterCases } from './spec-scope.js';

describe('serviceenvupdater spec cases', () => runOtherFilterCases(filter));

const env = (pairs: Record<string, string>) => Object.entries(pairs).map(([name, value]) => ({ name, value }));

describe('serviceenvupdater', () => {
  it('targets the kubelet on pods, as yurt-hub', () => {
    expect(filter.resources).toEqual(['pods']);
    expect(filter.defaultComponents).toEqual(['kubelet']);
  });

  it('every container, each variable only where it exists; init containers untouched', () => {
    const pod = otherFilterObject({
      kind: 'Pod',
      containers: [{ env: env({ KUBERNETES_SERVICE_HOST: 'a' }) }, { env: env({ KUBERNETES_SERVICE_PORT: '443', X: 'y' }) }, { image: 'no-env' }],
    });
    const out = filter.apply(pod, addressScope({ host: 'fd00::2:1', securePort: 10268 }))!;
    const spec = out.spec as { containers: { env?: unknown }[]; initContainers: unknown };
    expect(spec.containers.map((c) => c.env)).toEqual([env({ KUBERNETES_SERVICE_HOST: 'fd00::2:1' }), env({ KUBERNETES_SERVICE_PORT: '10268', X: 'y' }), undefined]);
    expect(spec.initContainers).toEqual((pod.spec as { initContainers: unknown }).initContainers);
    expect((out.spec as { containers: unknown[] }).containers[2]).toBe((pod.spec as { containers: unknown[] }).containers[2]);
  });

  it('values already poolview\'s, or no address: the very same Pod', () => {
    const done = otherFilterObject({ kind: 'Pod', containers: [{ env: env({ KUBERNETES_SERVICE_HOST: '169.254.2.1', KUBERNETES_SERVICE_PORT: '10268' }) }] });
    expect(filter.apply(done, addressScope())).toBe(done);
    const pod = otherFilterObject({ kind: 'Pod', containers: [{ env: env({ KUBERNETES_SERVICE_HOST: 'a' }) }] });
    expect(filter.apply(pod, makeScope({}))).toBe(pod);
  });
});
