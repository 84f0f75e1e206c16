import { describe, expect, it } from 'vitest';
import { componentOf, resolveRequestInfo } from '../../src/request-info.js';

type Row = [method: string, url: string, expected: Partial<ReturnType<typeof resolveRequestInfo>>];

// Expectations follow kube-apiserver's RequestInfoResolver.
const rows: Row[] = [
  ['GET', '/api/v1/namespaces/default/pods', { isResourceRequest: true, verb: 'list', apiPrefix: 'api', apiGroup: '', apiVersion: 'v1', namespace: 'default', resource: 'pods', name: '' }],
  ['GET', '/api/v1/namespaces/default/pods/web-0', { verb: 'get', namespace: 'default', resource: 'pods', name: 'web-0', subresource: '' }],
  ['HEAD', '/api/v1/namespaces/default/pods/web-0', { verb: 'get', name: 'web-0' }],
  ['GET', '/api/v1/pods', { verb: 'list', namespace: '', resource: 'pods' }],
  ['GET', '/api/v1/services?watch=true&resourceVersion=10', { verb: 'watch', resource: 'services' }],
  // The apiserver's query-to-bool conversion: only 0 and false (any case) are false; any other
  // value, even empty, is a watch (a LIST that never ends would hold a filtered LIST's resources).
  ['GET', '/api/v1/services?watch=1', { verb: 'watch' }],
  ['GET', '/api/v1/services?watch=yes', { verb: 'watch' }],
  ['GET', '/api/v1/services?watch=', { verb: 'watch' }],
  ['GET', '/api/v1/services?watch', { verb: 'watch' }],
  ['GET', '/api/v1/services?watch=True', { verb: 'watch' }],
  ['GET', '/api/v1/services?watch=0', { verb: 'list' }],
  ['GET', '/api/v1/services?watch=false', { verb: 'list' }],
  ['GET', '/api/v1/services?watch=FALSE', { verb: 'list' }],
  ['GET', '/api/v1/services?watch=False&watch=true', { verb: 'list' }],
  ['GET', '/api/v1/watch/services', { verb: 'watch', resource: 'services', name: '' }],
  ['GET', '/api/v1/watch/namespaces/kube-system/endpoints', { verb: 'watch', namespace: 'kube-system', resource: 'endpoints' }],
  ['GET', '/api/v1/watch/namespaces/kube-system/endpoints/dns', { verb: 'watch', namespace: 'kube-system', resource: 'endpoints', name: 'dns' }],
  ['GET', '/apis/discovery.k8s.io/v1/endpointslices?watch=true&allowWatchBookmarks=true', { verb: 'watch', apiPrefix: 'apis', apiGroup: 'discovery.k8s.io', apiVersion: 'v1', resource: 'endpointslices' }],
  ['GET', '/apis/discovery.k8s.io/v1beta1/namespaces/ns1/endpointslices/s-1', { verb: 'get', apiVersion: 'v1beta1', namespace: 'ns1', name: 's-1' }],
  ['GET', '/apis/apps.openyurt.io/v1beta2/nodepools/hangzhou', { verb: 'get', apiGroup: 'apps.openyurt.io', resource: 'nodepools', name: 'hangzhou', namespace: '' }],
  ['POST', '/api/v1/namespaces/default/configmaps', { verb: 'create', resource: 'configmaps', name: '' }],
  ['PUT', '/api/v1/namespaces/default/configmaps/c', { verb: 'update', name: 'c' }],
  ['PATCH', '/api/v1/nodes/node1/status', { verb: 'patch', resource: 'nodes', name: 'node1', subresource: 'status' }],
  ['DELETE', '/api/v1/namespaces/default/pods/p', { verb: 'delete', name: 'p' }],
  ['DELETE', '/api/v1/namespaces/default/pods', { verb: 'deletecollection', name: '' }],
  ['POST', '/api/v1/namespaces/default/pods/p/eviction', { verb: 'create', subresource: 'eviction', name: 'p' }],
  ['GET', '/api/v1/namespaces/default/pods/p/log?follow=true', { verb: 'get', subresource: 'log' }],
  ['POST', '/api/v1/namespaces/default/pods/p/exec?command=sh', { verb: 'create', subresource: 'exec' }],
  ['GET', '/api/v1/namespaces/default/pods/p/exec?command=sh', { verb: 'get', subresource: 'exec' }],
  ['POST', '/api/v1/namespaces/default/pods/p/portforward', { verb: 'create', subresource: 'portforward' }],
  ['GET', '/api/v1/namespaces/default/pods/p/proxy/metrics', { verb: 'get', resource: 'pods', name: 'p', subresource: 'proxy' }],
  ['GET', '/api/v1/namespaces/default/services/https:web:443/proxy/', { verb: 'get', resource: 'services', name: 'https:web:443', subresource: 'proxy' }],
  ['GET', '/api/v1/proxy/namespaces/default/pods/p/metrics', { verb: 'proxy', resource: 'pods', name: 'p', subresource: '' }],
  ['GET', '/api/v1/proxy/nodes/node1/stats', { verb: 'proxy', resource: 'nodes', name: 'node1', subresource: '' }],
  // A namespace itself and its subresources.
  ['GET', '/api/v1/namespaces', { verb: 'list', resource: 'namespaces', namespace: '' }],
  ['GET', '/api/v1/namespaces/kube-system', { verb: 'get', resource: 'namespaces', name: 'kube-system', namespace: 'kube-system' }],
  ['PUT', '/api/v1/namespaces/gone/finalize', { verb: 'update', resource: 'namespaces', name: 'gone', subresource: 'finalize' }],
  ['PUT', '/api/v1/namespaces/ns/status', { verb: 'update', resource: 'namespaces', name: 'ns', subresource: 'status' }],
  // A list pinned to one name by a field selector is authorized (and targeted) by that name.
  ['GET', '/api/v1/namespaces/kube-system/configmaps?fieldSelector=metadata.name%3Dyurt-hub-cfg&watch=true', { verb: 'watch', name: 'yurt-hub-cfg' }],
  ['GET', '/api/v1/nodes?fieldSelector=metadata.name%3D%3Dnode1', { verb: 'list', name: 'node1' }],
  ['GET', '/api/v1/nodes?fieldSelector=spec.unschedulable%3Dfalse', { verb: 'list', name: '' }],
  // Trailing and doubled slashes are trimmed at the ends only, as the apiserver does.
  ['GET', '/api/v1/namespaces/default/pods/', { verb: 'list', resource: 'pods' }],
  // Non-resource requests: verb is the lower-cased method.
  ['GET', '/version', { isResourceRequest: false, verb: 'get', resource: '', path: '/version' }],
  ['GET', '/healthz', { isResourceRequest: false, verb: 'get' }],
  ['GET', '/openapi/v2', { isResourceRequest: false }],
  ['GET', '/openapi/v3/apis/apps/v1', { isResourceRequest: false }],
  ['GET', '/api', { isResourceRequest: false, apiPrefix: '' }],
  ['GET', '/api/v1', { isResourceRequest: false }],
  ['GET', '/apis', { isResourceRequest: false }],
  ['GET', '/apis/apps', { isResourceRequest: false }],
  ['GET', '/apis/apps/v1', { isResourceRequest: false }],
  ['POST', '/logs', { isResourceRequest: false, verb: 'post' }],
  ['GET', '/', { isResourceRequest: false, verb: 'get', path: '/' }],
  ['GET', '/api/v1/watch', { isResourceRequest: false }],
];

describe('resolveRequestInfo', () => {
  it.each(rows)('%s %s', (method, url, expected) => {
    expect(resolveRequestInfo(method, url)).toMatchObject(expected);
  });

  it('keeps the path without the query', () => {
    expect(resolveRequestInfo('GET', '/api/v1/pods?limit=5').path).toBe('/api/v1/pods');
  });

  it('decodes escaped segments', () => {
    expect(resolveRequestInfo('GET', '/api/v1/namespaces/default/configmaps/a%3Ab')).toMatchObject({ name: 'a:b' });
  });
});

describe('componentOf', () => {
  it.each([
    ['kube-proxy/v1.30.0 (linux/amd64) kubernetes/7c48c2b', 'kube-proxy'],
    ['CoreDNS/1.11.1', 'coredns'],
    ['cilium-agent/1.15.0', 'cilium-agent'],
    ['kubectl', 'kubectl'],
    ['Mozilla', 'mozilla'],
    ['', undefined],
    [undefined, undefined],
    ['/v1', undefined],
  ])('%s → %s', (ua, component) => {
    expect(componentOf(ua)).toBe(component);
  });
});
