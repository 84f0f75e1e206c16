// Targeting: every case of test/fixtures/openyurt-cases.yaml section `approver_and_config`, plus the
// ConfigMap parsing, caching and version rules.
//
// The spec's cases name all seven yurt-hub filters: poolview's built-in ones, in yurt-hub's
// registration order; working mode and `--disabled-resource-filters` through enabledFilters().
//
// Cases where poolview differs on purpose (our behaviour asserted, see OURS below):
//   - CFG-03 (kube-proxy GET services): targeted. docs/design.md §6 (compatibility): "GET outside the view
//     answers 404 NotFound as the apiserver words it (yurt-hub returns the object unfiltered)".
//   - CFG-11 (`Foo` matches `foo`), CFG-12 (`filter_<name>` key read), CFG-13 (`foo/v2` cut at '/'),
//     CFG-19 (old `comp/resource#verbs` value → its component, with a warning): docs/design.md §6
//     (compatibility): "ConfigMap: both `<filter>` and `filter_<filter>` keys; entries matched
//     case-insensitively and cut at `/`".
//   - CFG-05 (kubelet PATCH pods → serviceenvupdater): poolview targets only get/list/watch (the view
//     engine serves LIST/GET/WATCH, docs/design.md §5 step 1); a patch response is never filtered.
//   - CFG-18 (`--disabled-resource-filters=*` in cloud mode): yurt-hub appends the cloud-disabled names,
//     so `*` stops meaning "all" there (a quirk); in poolview `*` disables every filter in both modes.
//   - CFG-04 (kubelet GET configmaps → inclusterconfig), CFG-16/17 and CFG-01/02/06 hold as in yurt-hub.

import { describe, expect, it } from 'vitest';
import {
  builtinFilters,
  discardCloudServiceFilter,
  enabledFilters,
  forwardKubeSvcTrafficFilter,
  inClusterConfigFilter,
  masterServiceFilter,
  serviceEnvUpdaterFilter,
} from '../../filters/index.js';
import { nodePortIsolationFilter } from '../../filters/nodeportisolation.js';
import { serviceTopologyFilter } from '../../filters/servicetopology.js';
import type { Filter } from '../../filters/types.js';
import { Targeting, isNeverFiltered, normaliseComponent } from '../../src/targeting.js';
import { type SpecCase, loadSpec } from '../filters/spec-scope.js';

const standIn = (name: string, resources: string[], defaultComponents: string[]): Filter => ({
  name,
  resources,
  defaultComponents,
  apply: (obj) => obj,
});


/** Our expectation where poolview differs on purpose (see the header). */
const OURS: Record<string, string[]> = {
  'CFG-03': ['discardcloudservice', 'nodeportisolation'],
  'CFG-05': [],
  'CFG-11': ['servicetopology'],
  'CFG-18': [],
};
/** For cases whose expectation depends on the yurt-hub version: the version that behaves like us. */
const VERSION_LIKE_OURS: Record<string, string> = {
  'CFG-12': 'v1_1_to_v1_6_0',
  'CFG-13': 'v1_1_to_v1_6_0',
  'CFG-19': 'v1_0',
};

function expected(c: SpecCase): string[] {
  if (OURS[c.id]) return OURS[c.id];
  const e = c.expect_filters;
  if (Array.isArray(e)) return e;
  const version = VERSION_LIKE_OURS[c.id];
  if (!version || !Array.isArray(e[version])) throw new Error(`${c.id}: no expectation chosen`);
  return e[version];
}

/** The component as the request classifier names it (User-Agent lower-cased, cut at '/'). */
function componentOf(userAgent: string): string | undefined {
  return userAgent === '' ? undefined : normaliseComponent(userAgent);
}

describe('approver_and_config spec cases', () => {
  for (const c of loadSpec().approver_and_config as SpecCase[]) {
    const title = `${c.id}: ${c.request.userAgent || '(no UA)'} ${c.request.verb} ${c.request.resource}`;
    it(title, () => {
      const targeting = new Targeting(enabledFilters(c.flags?.['disabled-resource-filters'] ?? [], c.workingMode ?? 'edge'));
      const data = c.configmap ?? c.configmap_v1_0_format;
      if (data) {
        const { warnings } = targeting.setConfigMap(data);
        if (c.id === 'CFG-19') expect(warnings).toHaveLength(1);
        else expect(warnings).toEqual([]);
      }
      if (c.then === 'configmap deleted') targeting.setConfigMap(undefined);

      const { userAgent, verb, resource } = c.request;
      const names = (cs: string | undefined) => targeting.filtersFor(cs, resource, verb).map((f) => f.name);
      expect(names(componentOf(userAgent))).toEqual(expected(c));
      // The raw User-Agent gives the same answer (filtersFor normalises too).
      if (userAgent !== '') expect(names(userAgent)).toEqual(expected(c));
    });
  }
});

describe('Targeting with the built-in filters', () => {
  it('defaults as yurt-hub: servicetopology for kube-proxy, coredns, nginx-ingress-controller; kube-proxy and kubelet get the rest', () => {
    const t = new Targeting(builtinFilters);
    for (const verb of ['get', 'list', 'watch']) {
      for (const c of ['coredns', 'nginx-ingress-controller']) {
        expect(t.filtersFor(c, 'endpointslices', verb)).toEqual([serviceTopologyFilter]);
        expect(t.filtersFor(c, 'endpoints', verb)).toEqual([serviceTopologyFilter]);
      }
      expect(t.filtersFor('kube-proxy', 'endpointslices', verb)).toEqual([serviceTopologyFilter, forwardKubeSvcTrafficFilter]);
      expect(t.filtersFor('kube-proxy', 'endpoints', verb)).toEqual([serviceTopologyFilter]);
      expect(t.filtersFor('kube-proxy', 'services', verb)).toEqual([discardCloudServiceFilter, nodePortIsolationFilter]);
      expect(t.filtersFor('coredns', 'services', verb)).toEqual([]);
      expect(t.filtersFor('kubelet', 'services', verb)).toEqual([masterServiceFilter]);
      expect(t.filtersFor('kubelet', 'configmaps', verb)).toEqual([inClusterConfigFilter]);
      expect(t.filtersFor('kubelet/v1.35.4 (linux/amd64) kubernetes/abc', 'pods', verb)).toEqual([serviceEnvUpdaterFilter]);
      expect(t.filtersFor('kubelet', 'endpointslices', verb)).toEqual([]);
    }
    expect([...t.resources].sort()).toEqual(['configmaps', 'endpoints', 'endpointslices', 'pods', 'services']);
    for (const verb of ['create', 'update', 'patch', 'delete', 'deletecollection']) {
      expect(t.filtersFor('kube-proxy', 'endpointslices', verb)).toEqual([]);
    }
    expect(t.filtersFor('kube-proxy', 'pods', 'list')).toEqual([]);
    expect(t.filtersFor(undefined, 'endpointslices', 'list')).toEqual([]);
    expect(t.filtersFor('', 'endpointslices', 'list')).toEqual([]);
    expect(t.componentsFor('servicetopology')).toEqual(['kube-proxy', 'coredns', 'nginx-ingress-controller']);
    expect(t.componentsFor('nope')).toEqual([]);
  });

  it('registration order, whatever the order of ConfigMap keys', () => {
    const shared: Filter = standIn('other', ['endpointslices'], []);
    const t = new Targeting([serviceTopologyFilter, shared]);
    t.setConfigMap({ other: 'cilium', servicetopology: 'cilium' });
    expect(t.filtersFor('cilium', 'endpointslices', 'watch').map((f) => f.name)).toEqual(['servicetopology', 'other']);
  });

  it('returns the same array for the same question (cached), frozen', () => {
    const t = new Targeting(builtinFilters);
    const a = t.filtersFor('kube-proxy', 'endpointslices', 'watch');
    expect(t.filtersFor('kube-proxy', 'endpointslices', 'watch')).toBe(a);
    expect(t.filtersFor('Kube-Proxy/v1.30.0 (linux/amd64)', 'endpointslices', 'watch')).toBe(a);
    expect(Object.isFrozen(a)).toBe(true);
  });

  it('never filters yurthub or poolview components, even when configured', () => {
    const t = new Targeting(builtinFilters);
    const { warnings } = t.setConfigMap({ servicetopology: 'yurthub, poolview, poolview-e2e' });
    expect(warnings).toHaveLength(3);
    for (const c of ['yurthub', 'poolview', 'poolview-e2e', 'PoolView/0.1.0']) {
      expect(t.filtersFor(c, 'endpointslices', 'list')).toEqual([]);
    }
    expect(t.componentsFor('servicetopology')).toEqual(['kube-proxy', 'coredns', 'nginx-ingress-controller']);
    expect(isNeverFiltered('yurthub')).toBe(true);
    expect(isNeverFiltered('yurthubx')).toBe(false);
    expect(isNeverFiltered('poolviewer')).toBe(true);
  });

  it('never filters a never-filtered component named in a filter\'s defaults', () => {
    const t = new Targeting([standIn('x', ['pods'], ['yurthub', 'kubelet'])]);
    expect(t.componentsFor('x')).toEqual(['kubelet']);
    expect(t.filtersFor('yurthub', 'pods', 'list')).toEqual([]);
  });

  it('rejects two filters with the same name', () => {
    expect(() => new Targeting([serviceTopologyFilter, serviceTopologyFilter])).toThrow(/twice/);
  });
});

describe('yurt-hub-cfg ConfigMap', () => {
  it('adds trimmed, lower-cased components cut at "/", both key forms, empty entries ignored', () => {
    const t = new Targeting(builtinFilters);
    const { warnings } = t.setConfigMap({
      servicetopology: ' Cilium-Agent , cilium/v1.15,, ',
      filter_servicetopology: 'traefik',
      filter_nodeportisolation: 'my-proxy',
    });
    expect(warnings).toEqual([]);
    expect(t.componentsFor('servicetopology')).toEqual(['kube-proxy', 'coredns', 'nginx-ingress-controller', 'cilium-agent', 'cilium', 'traefik']);
    expect(t.filtersFor('cilium-agent', 'endpointslices', 'watch')).toEqual([serviceTopologyFilter]);
    expect(t.filtersFor('traefik', 'endpoints', 'list')).toEqual([serviceTopologyFilter]);
    expect(t.filtersFor('my-proxy', 'services', 'get')).toEqual([nodePortIsolationFilter]);
  });

  it('ignores unknown keys, cache_agents included, without warnings', () => {
    const t = new Targeting(builtinFilters);
    const before = t.version;
    const { warnings } = t.setConfigMap({ cache_agents: 'foo, *', masterservice: 'kubelet', filter_nope: 'x', discardcloudservice: '' });
    expect(warnings).toEqual([]);
    expect(t.version).toBe(before);
    expect(t.filtersFor('foo', 'endpointslices', 'list')).toEqual([]);
  });

  it('an empty value (the Helm chart default) adds nothing', () => {
    const t = new Targeting(builtinFilters);
    expect(t.setConfigMap({ servicetopology: '', nodeportisolation: '  ' }).warnings).toEqual([]);
    expect(t.version).toBe(0);
  });

  it('reports broken entries and keeps going, never throws', () => {
    const t = new Targeting(builtinFilters);
    const data = {
      servicetopology: 'kube proxy, cilium;agent, ok-one, /v1, (x), "q"',
      nodeportisolation: 'bar/services#list;watch',
      filter_servicetopology: 42 as unknown as string,
    };
    let result!: { warnings: string[] };
    expect(() => (result = t.setConfigMap(data))).not.toThrow();
    expect(result.warnings).toHaveLength(7);
    expect(result.warnings.join('\n')).toMatch(/old component\/resource#verbs syntax/);
    expect(t.componentsFor('servicetopology')).toEqual(['kube-proxy', 'coredns', 'nginx-ingress-controller', 'ok-one']);
    expect(t.filtersFor('bar', 'services', 'watch')).toEqual([nodePortIsolationFilter]);
    expect(t.configWarnings).toHaveLength(7);
    expect(() => t.setConfigMap(null as unknown as undefined)).not.toThrow();
  });

  it('warns once: a resync with the same content reports nothing new', () => {
    const t = new Targeting(builtinFilters);
    expect(t.setConfigMap({ servicetopology: 'foo/endpointslices#list;watch' }).warnings).toHaveLength(1);
    expect(t.setConfigMap({ servicetopology: 'foo/endpointslices#list;watch' }).warnings).toEqual([]);
    expect(t.configWarnings).toHaveLength(1);
    t.setConfigMap(undefined);
    expect(t.configWarnings).toEqual([]);
    expect(t.setConfigMap({ servicetopology: 'foo/endpointslices#list;watch' }).warnings).toHaveLength(1);
  });

  it('bumps version only when the mapping changes; deletion goes back to defaults', () => {
    const t = new Targeting(builtinFilters);
    expect(t.version).toBe(0);
    const defaults = t.filtersFor('kube-proxy', 'services', 'list');
    t.setConfigMap({ servicetopology: 'foo, bar' });
    expect(t.version).toBe(1);
    t.setConfigMap({ servicetopology: 'bar,foo', cache_agents: 'changed' });
    expect(t.version).toBe(1);
    t.setConfigMap({ servicetopology: 'FOO, bar, foo/v2' });
    expect(t.version).toBe(1);
    t.setConfigMap({ servicetopology: 'kube-proxy' });
    expect(t.version).toBe(2);
    t.setConfigMap(undefined);
    expect(t.version).toBe(2); // kube-proxy was a default already: same mapping
    t.setConfigMap({ servicetopology: 'foo' });
    expect(t.filtersFor('foo', 'endpointslices', 'list')).toEqual([serviceTopologyFilter]);
    expect(t.version).toBe(3);
    t.setConfigMap(undefined);
    expect(t.version).toBe(4);
    expect(t.filtersFor('foo', 'endpointslices', 'list')).toEqual([]);
    expect(t.filtersFor('kube-proxy', 'services', 'list')).toEqual(defaults);
  });

  it('defaults cannot be removed through the ConfigMap', () => {
    const t = new Targeting(builtinFilters);
    t.setConfigMap({ servicetopology: '-kube-proxy' });
    expect(t.filtersFor('kube-proxy', 'endpointslices', 'list')).toEqual([serviceTopologyFilter, forwardKubeSvcTrafficFilter]);
  });
});

describe('normaliseComponent', () => {
  it('lower-cases, cuts at the first "/" and trims', () => {
    expect(normaliseComponent('kube-proxy/v1.30.0 (linux/amd64) kubernetes/abcdef')).toBe('kube-proxy');
    expect(normaliseComponent('Foo/1.0')).toBe('foo');
    expect(normaliseComponent(' coredns ')).toBe('coredns');
    expect(normaliseComponent('/x')).toBe('');
  });
});
