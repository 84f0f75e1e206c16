// The Grafana dashboard (config/grafana/) and the PrometheusRule (config/prometheus/) against what a
// running poolview serves on /metrics: every metric they query exists there, the readiness gauges
// say what /readyz says, and the dashboard has the shape Grafana loads (panels with targets on a
// datasource template variable, on a grid that does not overlap).
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { startTestPoolview, type TestPoolview } from '../support/poolview.js';
import { poll } from '../support/processes.js';
import { sharedCluster, uniqueName } from '../support/shared-cluster.js';

const CONFIG = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'config');
const dashboard = JSON.parse(readFileSync(join(CONFIG, 'grafana', 'poolview-dashboard.json'), 'utf8'));
const rules = parse(readFileSync(join(CONFIG, 'prometheus', 'poolview-rules.yaml'), 'utf8'));

const cluster = sharedCluster();
const node = uniqueName('obs-node');
const pool = uniqueName('obs-pool');
let pv: TestPoolview;
let exposition: string;

beforeAll(async () => {
  await cluster.createNodePool(pool, { nodes: [node] });
  await cluster.createNode(node, { internalIP: '10.250.253.2', pool });
  pv = await startTestPoolview(cluster, { nodeName: node });
  await poll('poolview ready', async () => (await fetch(`${pv.healthUrl}/readyz`)).status === 200, 30_000, 200);
  exposition = await (await fetch(`${pv.healthUrl}/metrics`)).text();
});

afterAll(async () => {
  await pv?.close();
  await cluster.delete('v1', 'Node', node).catch(() => {});
  await cluster.delete('apps.openyurt.io/v1beta2', 'NodePool', pool).catch(() => {});
  await cluster.close();
});

const PROMQL_KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan']);

/** Metric names a PromQL expression selects: identifiers that are not functions, keywords, labels or variables. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // strings (label values, regexes)
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // range and subquery selectors ($__rate_interval)
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' '); // grouping labels
  const names = new Set<string>();
  for (const m of bare.matchAll(/(?<![\w$.])[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const followedBy = bare.slice(m.index! + m[0].length).trimStart();
    if (followedBy.startsWith('(') || PROMQL_KEYWORDS.has(m[0].toLowerCase())) continue;
    names.add(m[0]);
  }
  return [...names];
}

/** name → type, from the exposition's # TYPE lines. */
function exposedTypes(text: string): Map<string, string> {
  return new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
}

/** The series of a bare metric name at one scrape: label sets and values. */
function samples(text: string, name: string): Array<{ labels: Record<string, string>; value: number }> {
  const out = [];
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm'))) {
    const labels = Object.fromEntries([...(m[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!]));
    out.push({ labels, value: Number(m[2]) });
  }
  return out;
}

function isExposed(types: Map<string, string>, name: string): boolean {
  if (types.has(name)) return true;
  const base = /^(.*)_(bucket|sum|count)$/.exec(name)?.[1];
  return base !== undefined && ['histogram', 'summary'].includes(types.get(base) ?? '');
}

const dashboardExprs = (): string[] => dashboard.panels.flatMap((p: any) => (p.targets ?? []).map((t: any) => t.expr as string));
const ruleList = (): any[] => rules.spec.groups.flatMap((g: any) => g.rules);

describe('metric names of the dashboard and the alert rules', () => {
  it('the PromQL reader finds metric names and skips functions, labels, strings and variables', () => {
    expect(metricNames('histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket{instance=~"$instance", x="y(z)"}[$__rate_interval])))')).toEqual(['a_bucket']);
    expect(metricNames('sum by (instance) (rate(b_total{code=~"5..|0"}[5m])) / sum by (instance) (rate(b_total[5m])) > 0.1')).toEqual(['b_total']);
    expect(metricNames('c == 0 and on (check) d offset 5m')).toEqual(['c', 'd']);
  });

  it('every metric the dashboard and the rules query is on a running poolview\'s /metrics', () => {
    const types = exposedTypes(exposition);
    const exprs = [...dashboardExprs(), ...ruleList().map((r) => String(r.expr))];
    expect(exprs.length).toBeGreaterThan(10);
    const used = new Set<string>();
    for (const expr of exprs) {
      const names = metricNames(expr);
      expect(names.length, `a metric in ${expr}`).toBeGreaterThan(0);
      for (const n of names) used.add(n);
    }
    const missing = [...used].filter((n) => !isExposed(types, n));
    expect(missing, `not on /metrics:\n${exposition.split('\n').filter((l) => l.startsWith('# TYPE')).join('\n')}`).toEqual([]);
    // What the issue asks the dashboard to show, by the metrics behind it.
    for (const n of [
      'poolview_views_open', 'poolview_view_events_synthesized_total', 'poolview_scope_change_fanout_seconds_bucket', 'poolview_requests_total',
      'poolview_readyz_check_error', 'poolview_watch_clients_cut_slow_total', 'process_resident_memory_bytes', 'poolview_upstream_up',
    ]) expect(used.has(n), n).toBe(true);
  });

  it('the readiness gauges the alerts use say what /readyz?verbose says', async () => {
    const verbose = await (await fetch(`${pv.healthUrl}/readyz?verbose`)).text();
    const passing = [...verbose.matchAll(/^\[\+\](\S+) ok$/gm)].map((m) => m[1]).sort();
    expect(passing).toEqual(expect.arrayContaining(['apiserver', 'scope-source-services', 'serving-certificate']));
    const text = await (await fetch(`${pv.healthUrl}/metrics`)).text();
    const gauge = samples(text, 'poolview_readyz_check');
    expect(gauge.filter((s) => s.value === 1).map((s) => s.labels.check).sort()).toEqual(passing);
    expect(gauge.filter((s) => s.value !== 1)).toEqual([]);
    // No scope source is retrying: the stale alert's series are all 0, and there are some.
    const errors = samples(text, 'poolview_readyz_check_error').filter((s) => s.labels.check!.startsWith('scope-source-'));
    expect(errors.length).toBeGreaterThan(3);
    expect(errors.every((s) => s.value === 0)).toBe(true);
    expect(samples(text, 'poolview_upstream_up')).toEqual([{ labels: {}, value: 1 }]);
  });
});

describe('config/grafana/poolview-dashboard.json', () => {
  const variables: any[] = dashboard.templating.list;
  const datasource = variables.find((v) => v.type === 'datasource');

  it('is a dashboard with a Prometheus datasource variable and a per-node variable', () => {
    expect(dashboard).toMatchObject({ title: 'poolview', uid: 'poolview' });
    expect(typeof dashboard.schemaVersion).toBe('number');
    expect(datasource).toMatchObject({ type: 'datasource', query: 'prometheus' });
    const instance = variables.find((v) => v.name === 'instance');
    expect(instance).toMatchObject({ type: 'query', datasource: { type: 'prometheus', uid: `\${${datasource.name}}` } });
    expect(metricNames(instance.definition.replace(/^label_values\((.*), \w+\)$/, '$1'))).toEqual(['poolview_upstream_up']);
  });

  it('every panel queries through the datasource variable; ids unique; the grid does not overlap', () => {
    const ids = new Set<number>();
    const cells = new Set<string>();
    const names = new Set(variables.map((v) => v.name));
    for (const p of dashboard.panels) {
      expect(ids.has(p.id), `panel id ${p.id}`).toBe(false);
      ids.add(p.id);
      const { x, y, w, h } = p.gridPos;
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++) for (let j = y; j < y + h; j++) {
        expect(cells.has(`${i},${j}`), `${p.title} overlaps at ${i},${j}`).toBe(false);
        cells.add(`${i},${j}`);
      }
      if (p.type === 'row') {
        expect(p.targets).toBeUndefined();
        continue;
      }
      expect(['timeseries', 'stat'], p.title).toContain(p.type);
      expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: `\${${datasource.name}}` });
      expect(p.targets.length, p.title).toBeGreaterThan(0);
      expect(new Set(p.targets.map((t: any) => t.refId)).size).toBe(p.targets.length);
      for (const t of p.targets) {
        expect(t.datasource).toEqual(p.datasource);
        // Only defined variables and Grafana's own.
        for (const v of String(t.expr).matchAll(/\$(\w+)/g)) expect(names.has(v[1]) || v[1]!.startsWith('__'), `${p.title}: $${v[1]}`).toBe(true);
      }
    }
    expect(dashboard.panels.filter((p: any) => p.type !== 'row').length).toBeGreaterThanOrEqual(12);
  });
});

describe('config/prometheus/poolview-rules.yaml', () => {
  it('is a PrometheusRule with the three alerts, each with a duration, a severity and a summary', () => {
    expect(rules).toMatchObject({ apiVersion: 'monitoring.coreos.com/v1', kind: 'PrometheusRule', metadata: { name: 'poolview' } });
    const byName = new Map(ruleList().map((r) => [r.alert, r]));
    expect([...byName.keys()]).toEqual(expect.arrayContaining(['PoolviewNotReady', 'PoolviewScopeSourcesStale', 'PoolviewUpstreamFailing']));
    for (const r of byName.values()) {
      expect(r.for, r.alert).toMatch(/^\d+[smh]$/);
      expect(['warning', 'critical']).toContain(r.labels.severity);
      expect(r.annotations.summary, r.alert).toBeTruthy();
    }
  });

  it('a healthy poolview fires none of them: each simple comparison selects no series', () => {
    // `<metric>{<label>=~"<re>"} == <n>` alerts, evaluated on the scrape.
    const simple = ruleList().filter((x) => /^\w+(\{[^}]*\})? == \d+$/.test(x.expr));
    expect(simple.map((r) => r.alert)).toEqual(['PoolviewNotReady', 'PoolviewScopeSourcesStale', 'PoolviewUpstreamFailing']);
    for (const r of simple) {
      const m = /^(\w+)(?:\{(\w+)=~"([^"]*)"\})? == (\d+)$/.exec(r.expr)!;
      const [, name, label, re, n] = m;
      const firing = samples(exposition, name!).filter((s) => (!label || new RegExp(`^${re}$`).test(s.labels[label] ?? '')) && s.value === Number(n));
      expect(samples(exposition, name!).length, r.alert).toBeGreaterThan(0);
      expect(firing, r.alert).toEqual([]);
    }
  });
});
