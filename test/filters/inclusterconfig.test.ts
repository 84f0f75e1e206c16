// inclusterconfig: the other_filters case IC-01, plus yurt-hub's line rule (exactly two ':' parts,
// first part `kubeconfig`) on the shapes kubeadm writes.
import { describe, expect, it } from 'vitest';
import { commentOutKubeconfig, inClusterConfigFilter as filter } from '../../filters/inclusterconfig.js';
import { makeScope, otherFilterObject, runOtherFilterCases } from './spec-scope.js';

describe('inclusterconfig spec cases', () => runOtherFilterCases(filter));

const KUBEADM = [
  'apiVersion: kubeproxy.config.k8s.io/v1alpha1',
  'bindAddress: 0.0.0.0',
  'clientConnection:',
  '  acceptContentTypes: ""',
  '  burst: 0',
  '  contentType: ""',
  '  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf',
  '  qps: 0',
  'mode: ""',
].join('\n');

describe('inclusterconfig', () => {
  it('targets the kubelet on configmaps, as yurt-hub', () => {
    expect(filter.resources).toEqual(['configmaps']);
    expect(filter.defaultComponents).toEqual(['kubelet']);
  });

  it('comments out only the kubeconfig line of kubeadm\'s config.conf; other keys untouched', () => {
    const cm = otherFilterObject({ kind: 'ConfigMap', namespace: 'kube-system', name: 'kube-proxy', data: { 'config.conf': KUBEADM, 'kubeconfig.conf': 'kubeconfig: x' } });
    const out = filter.apply(cm, makeScope({}))!;
    expect((out.data as Record<string, string>)['config.conf']).toBe(KUBEADM.replace('  kubeconfig:', '  #kubeconfig:'));
    expect((out.data as Record<string, string>)['kubeconfig.conf']).toBe('kubeconfig: x');
    // Twice is the same as once: the commented line no longer matches.
    expect(filter.apply(out, makeScope({}))).toBe(out);
  });

  it('lines that do not split into exactly two parts are left (yurt-hub quirk kept)', () => {
    expect(commentOutKubeconfig('kubeconfig: C:\\k\\kube.conf')).toBe('kubeconfig: C:\\k\\kube.conf');
    expect(commentOutKubeconfig('kubeconfigs: /x')).toBe('kubeconfigs: /x');
    expect(commentOutKubeconfig('kubeconfig:')).toBe('#kubeconfig:');
  });

  it('other ConfigMaps, or one without config.conf: unchanged', () => {
    for (const cm of [
      otherFilterObject({ kind: 'ConfigMap', namespace: 'default', name: 'kube-proxy', data: { 'config.conf': KUBEADM } }),
      otherFilterObject({ kind: 'ConfigMap', namespace: 'kube-system', name: 'kube-proxy', data: { other: KUBEADM } }),
      otherFilterObject({ kind: 'ConfigMap', namespace: 'kube-system', name: 'kube-proxy' }),
    ]) {
      expect(filter.apply(cm, makeScope({}))).toBe(cm);
    }
  });
});
