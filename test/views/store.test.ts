// The objects views share: one copy per version, one decision per (version, chain, scope
// generation), and the index that narrows a scope change to the objects it concerns.
import { describe, expect, it } from 'vitest';
import type { Filter, KubeObject, Scope } from '../../filters/types.js';
import { SharedObjects } from '../../src/views/store.js';

function slice(name: string, rv: number, nodes: string[], service = 'web'): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'ns', resourceVersion: String(rv), labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    endpoints: nodes.map((nodeName, i) => ({ addresses: [`10.0.0.${i}`], nodeName })),
  };
}

const scope = {} as Scope;

describe('SharedObjects', () => {
  it('interns one copy per object version', () => {
    const store = new SharedObjects();
    store.retain();
    const first = store.intern(slice('a', 5, ['n1']));
    expect(store.intern(slice('a', 5, ['n1']))).toBe(first);
    const newer = slice('a', 6, ['n1']);
    expect(store.intern(newer)).toBe(newer);
    expect(store.intern(slice('a', 6, ['n1']))).toBe(newer);
  });

  it('indexes keys by Service and by the nodes of the latest two versions', () => {
    const store = new SharedObjects();
    store.retain();
    store.intern(slice('a', 1, ['n1', 'n2']));
    store.intern(slice('b', 2, ['n3'], 'api'));
    expect([...store.keysOf({ services: new Set(['ns/web']), nodes: new Set() })]).toEqual(['ns/a']);
    expect([...store.keysOf({ services: new Set(), nodes: new Set(['n3']) })]).toEqual(['ns/b']);
    store.intern(slice('a', 3, ['n4']));
    // A view that lags one version behind may still hold a's endpoint on n1.
    expect(store.keysOf({ services: new Set(), nodes: new Set(['n1']) }).has('ns/a')).toBe(true);
    store.intern(slice('a', 4, ['n5']));
    expect(store.keysOf({ services: new Set(), nodes: new Set(['n1']) }).has('ns/a')).toBe(false);
    expect(store.keysOf({ services: new Set(), nodes: new Set(['n4', 'n5']) }).has('ns/a')).toBe(true);
    store.forget(slice('a', 5, ['n5']));
    expect(store.keysOf({ services: new Set(['ns/web']), nodes: new Set(['n5']) }).size).toBe(0);
  });

  it('shares a decision while the scope generation and the chain stay the same', () => {
    const store = new SharedObjects();
    store.retain();
    let calls = 0;
    const drop: Filter = { name: 'drop', resources: ['endpointslices'], defaultComponents: [], apply: () => (calls++, null) };
    const keep: Filter = { name: 'keep', resources: ['endpointslices'], defaultComponents: [], apply: (o) => (calls++, o) };
    const obj = store.intern(slice('a', 1, ['n1']));
    expect(store.decide([drop], obj, scope, 1)).toBeNull();
    expect(store.decide([drop], obj, scope, 1)).toBeNull();
    expect(calls).toBe(1);
    expect(store.decide([keep], obj, scope, 1)).toBe(obj);
    expect(store.decide([drop], obj, scope, 2)).toBeNull();
    expect(calls).toBe(3);
    expect(store.decide([], obj, scope, 2)).toBe(obj);
  });

  it('holds nothing once the last view is released', () => {
    const store = new SharedObjects();
    store.retain();
    store.retain();
    const obj = store.intern(slice('a', 1, ['n1']));
    store.release();
    expect(store.intern(slice('a', 1, ['n1']))).toBe(obj);
    store.release();
    expect(store.intern(slice('a', 1, ['n1']))).not.toBe(obj);
    expect(store.keysOf({ services: new Set(), nodes: new Set(['n1']) }).size).toBe(1);
  });
});
