// The Helm chart (config/helm/poolview) with a real helm built from the Go module proxy and the real
// apiserver: `helm lint`, renders of several value sets applied with `kubectl apply --dry-run=server`,
// the default render against the kustomization's objects (and the csr mode against the component
// rotate-server-certificates/), and every rendered argument list parsed by poolview's own CLI.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseServeArgs } from '../../src/cli.js';
import { FLAGS, resolveOptions } from '../../src/options.js';
import { buildHelm, Helm } from '../support/helm.js';
import { expectDryRunLines, parseObjects, unexpectedApplyWarnings, type Obj } from '../support/manifests.js';
import { sharedCluster, uniqueName } from '../support/shared-cluster.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CONFIG = join(ROOT, 'config');
const CHART = join(CONFIG, 'helm', 'poolview');
const EDGE_WORKER = { 'openyurt.io/is-edge-worker': 'true' };

const cluster = sharedCluster();
const scratch = mkdtempSync(join(tmpdir(), 'poolview-helm-'));
const cleanups: (() => Promise<unknown>)[] = [];
let helm: Helm;

beforeAll(async () => {
  // Cached by .ci/run (and after the first run); a cold build takes minutes on 2 cores.
  helm = new Helm(await buildHelm((line) => console.log(`[helm] ${line}`)), join(scratch, 'helm-home'));
}, 20 * 60_000);

afterAll(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => {});
  rmSync(scratch, { recursive: true, force: true });
  await cluster.close();
});

/** Value sets an operator would write; `undefined` = the chart's defaults. */
const VALUE_SETS: Record<string, { release: string; namespace: string; values?: Record<string, unknown> }> = {
  default: { release: 'poolview', namespace: 'kube-system' },
  csr: { release: 'poolview', namespace: 'kube-system', values: { servingCertificate: { mode: 'csr' } } },
  tuned: {
    release: 'poolview',
    namespace: 'kube-system',
    values: {
      image: { repository: 'registry.example.com/edge/poolview', tag: '0.2.0', pullPolicy: 'Always' },
      imagePullSecrets: [{ name: 'regcred' }],
      nodeSelector: { ...EDGE_WORKER, 'kubernetes.io/os': 'linux' },
      tolerations: [{ key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute' }],
      resources: { requests: { cpu: '100m', memory: '256Mi' }, limits: { memory: '512Mi' } },
      ports: { proxy: 20261, secure: 20268, health: 20267 },
      anonymousRequests: 'reject',
      featureGates: { NodePortAutoListen: true, ViewTransitions: false },
      logLevel: 'debug',
      targeting: { name: 'poolview-targets', entries: { servicetopology: ['cilium-agent', 'traefik'], nodeportisolation: ['cilium-agent'] } },
      extraArgs: ['--nodepool-name=hangzhou'],
      extraEnv: [{ name: 'KUBERNETES_SERVICE_HOST', value: '10.0.0.1' }, { name: 'KUBERNETES_SERVICE_PORT', value: '6443' }],
      podAnnotations: { 'prometheus.io/port': '20267' },
    },
  },
  // Another release in another namespace: plain HTTP only, anonymous clients as poolview, every node,
  // an existing targeting ConfigMap kept.
  plain: {
    release: 'edge',
    namespace: uniqueName('helm-edge'),
    // (null, not {}: Helm merges maps with the defaults, null removes the key.)
    values: { servingCertificate: { mode: 'none' }, anonymousRequests: 'proxy-identity', nodeSelector: null, targeting: { create: false } },
  },
};

function valuesFile(name: string): string[] {
  const values = VALUE_SETS[name]!.values;
  if (!values) return [];
  const file = join(scratch, `${name}.values.yaml`);
  writeFileSync(file, stringify(values));
  return ['-f', file];
}

async function render(name: string): Promise<{ text: string; objects: Obj[] }> {
  const { release, namespace } = VALUE_SETS[name]!;
  const r = await helm.run(['template', release, CHART, '--namespace', namespace, ...valuesFile(name)]);
  expect(r.code, `helm template (${name})\n${r.stderr}`).toBe(0);
  return { text: r.stdout, objects: parseObjects(r.stdout) };
}

/** `kubectl kustomize` of config/, or of an overlay adding the component rotate-server-certificates/. */
async function kustomize(component?: string): Promise<Obj[]> {
  let dir = CONFIG;
  if (component) {
    dir = mkdtempSync(join(scratch, 'overlay-'));
    const base = relative(dir, CONFIG);
    writeFileSync(join(dir, 'kustomization.yaml'), stringify({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: [base], components: [`${base}/${component}`] }));
  }
  const r = await cluster.kubectl(['kustomize', dir]);
  expect(r.code, r.stderr).toBe(0);
  return parseObjects(r.stdout);
}

const byName = (a: Obj, b: Obj) => String(a.name).localeCompare(String(b.name));

/**
 * What must agree between two installs: per object (kind/name), its namespace and the fields that
 * decide behaviour (args, env, ports, probes, resources, security, volumes; RBAC rules and bindings;
 * the ConfigMap's data). Labels, the selector and the node selector are the chart's own.
 */
function essentials(objects: Obj[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const o of objects) {
    const key = `${o.kind}/${o.metadata!.name}`;
    const ns = o.metadata!.namespace;
    switch (o.kind) {
      case 'DaemonSet': {
        const pod = o.spec.template.spec;
        const container = (c: Obj) => ({ ...c, volumeMounts: [...(c.volumeMounts ?? [])].sort(byName) });
        const { nodeSelector: _ignored, ...rest } = pod;
        out[key] = {
          ns,
          updateStrategy: o.spec.updateStrategy,
          pod: { ...rest, containers: pod.containers.map(container), initContainers: pod.initContainers?.map(container), volumes: [...pod.volumes].sort(byName) },
        };
        break;
      }
      case 'ClusterRole':
      case 'Role':
        out[key] = { ns, rules: o.rules };
        break;
      case 'ClusterRoleBinding':
      case 'RoleBinding':
        out[key] = { ns, roleRef: o.roleRef, subjects: o.subjects };
        break;
      case 'ConfigMap':
        out[key] = { ns, data: o.data, yurthubLabel: o.metadata!.labels?.['openyurt.io/configmap-name'] };
        break;
      default:
        out[key] = { ns };
    }
  }
  // JSON: no undefined members (a kustomize container without initContainers = none).
  return JSON.parse(JSON.stringify(out));
}

const daemonSet = (objects: Obj[]) => objects.find((o) => o.kind === 'DaemonSet')!;
const podOf = (objects: Obj[]) => daemonSet(objects).spec.template.spec;

const EMPTY_TARGETS = Object.fromEntries(
  ['servicetopology', 'masterservice', 'discardcloudservice', 'inclusterconfig', 'nodeportisolation', 'forwardkubesvctraffic', 'serviceenvupdater'].map((f) => [f, '']),
);

describe('helm chart config/helm/poolview', () => {
  it('helm lint --strict passes with the defaults and with every value set', async () => {
    for (const name of Object.keys(VALUE_SETS)) {
      const r = await helm.run(['lint', CHART, '--strict', '--namespace', VALUE_SETS[name]!.namespace, ...valuesFile(name)]);
      expect(r.code, `helm lint (${name})\n${r.stdout}${r.stderr}`).toBe(0);
      expect(r.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
      expect(r.stdout).not.toMatch(/\[(WARNING|ERROR)\]/);
    }
  });

  it('the default render has the objects of kubectl kustomize config/, field for field, on edge nodes', async () => {
    const chart = (await render('default')).objects;
    const kustomized = await kustomize();
    expect(chart.map((o) => `${o.kind}/${o.metadata!.name}`).sort()).toEqual(kustomized.map((o) => `${o.kind}/${o.metadata!.name}`).sort());
    expect(essentials(chart)).toEqual(essentials(kustomized));
    // Spelled out, the fields the issue names (the comparison above already covers them).
    const [c, k] = [podOf(chart).containers[0], podOf(kustomized).containers[0]];
    expect(c.args).toEqual(k.args);
    expect(c.ports).toEqual(k.ports);
    expect([c.livenessProbe, c.readinessProbe]).toEqual([k.livenessProbe, k.readinessProbe]);
    const rules = (objects: Obj[]) => Object.fromEntries(objects.filter((o) => /Role$/.test(o.kind!)).map((o) => [`${o.kind}/${o.metadata!.name}`, o.rules]));
    expect(rules(chart)).toEqual(rules(kustomized));
    // The chart's one difference on purpose: edge nodes only, as OpenYurt labels them.
    expect(podOf(chart).nodeSelector).toEqual(EDGE_WORKER);
    expect(podOf(kustomized).nodeSelector).toBeUndefined();
  });

  it('servingCertificate.mode=csr renders what the component rotate-server-certificates/ does', async () => {
    const chart = (await render('csr')).objects;
    const kustomized = await kustomize('rotate-server-certificates');
    expect(essentials(chart)).toEqual(essentials(kustomized));
    expect(podOf(chart).containers[0].args).toContain('--rotate-server-certificates=true');
    expect(chart.map((o) => `${o.kind}/${o.metadata!.name}`)).toEqual(expect.arrayContaining(['ClusterRole/poolview-serving-csr', 'ClusterRoleBinding/poolview-serving-csr']));
  });

  it('every value set renders objects the real apiserver accepts (kubectl apply --dry-run=server)', async () => {
    const plainNs = VALUE_SETS.plain!.namespace;
    await cluster.createNamespace(plainNs);
    cleanups.push(() => cluster.delete('v1', 'Namespace', plainNs));
    for (const name of Object.keys(VALUE_SETS)) {
      const { text, objects } = await render(name);
      const r = await cluster.kubectl(['apply', '--dry-run=server', '-f', '-'], { input: text, timeoutMs: 60_000 });
      expect(r.code, `kubectl apply --dry-run=server (${name})\n${r.stdout}${r.stderr}`).toBe(0);
      expect(unexpectedApplyWarnings(r.stderr), `${name}: ${r.stderr}`).toEqual([]);
      expectDryRunLines(r.stdout, objects);
    }
    // Nothing was created.
    expect(await cluster.get('apps/v1', 'DaemonSet', 'poolview', 'kube-system')).toBeUndefined();
    expect(await cluster.get('apps/v1', 'DaemonSet', 'edge-poolview', plainNs)).toBeUndefined();
  });

  it('values reach the objects the apiserver would store', async () => {
    const stored = async (name: string) => {
      const list = await cluster.kubectlJson<{ items: Obj[] }>(['apply', '--dry-run=server', '-o', 'json', '-f', '-'], { input: (await render(name)).text, timeoutMs: 60_000 });
      return list.items;
    };
    const tuned = await stored('tuned');
    const pod = podOf(tuned);
    const container = pod.containers[0];
    expect(container.image).toBe('registry.example.com/edge/poolview:0.2.0');
    expect(container.imagePullPolicy).toBe('Always');
    expect(pod.imagePullSecrets).toEqual([{ name: 'regcred' }]);
    expect(pod.nodeSelector).toEqual({ ...EDGE_WORKER, 'kubernetes.io/os': 'linux' });
    expect(pod.tolerations).toEqual([{ key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute' }]);
    expect(container.resources).toEqual({ requests: { cpu: '100m', memory: '256Mi' }, limits: { memory: '512Mi' } });
    expect(container.args).toEqual([
      '--bind-address=127.0.0.1', '--port=20261', '--secure-port=20268', '--health-port=20267',
      '--tls-cert-file=/etc/poolview/tls/tls.crt', '--tls-private-key-file=/etc/poolview/tls/tls.key',
      '--anonymous-requests=reject', '--feature-gates=NodePortAutoListen=true,ViewTransitions=false', '--log-level=debug',
      '--configmap-name=poolview-targets', '--nodepool-name=hangzhou',
    ]);
    expect(container.ports.map((p: Obj) => p.containerPort)).toEqual([20261, 20268, 20267]);
    expect(container.readinessProbe.httpGet).toMatchObject({ host: '127.0.0.1', path: '/readyz', port: 20267 });
    expect(container.env.map((e: Obj) => e.name)).toEqual(['NODE_NAME', 'KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT']);
    expect(daemonSet(tuned).spec.template.metadata.annotations).toEqual({ 'prometheus.io/port': '20267' });
    const cm = tuned.find((o) => o.kind === 'ConfigMap')!;
    expect(cm.metadata!.name).toBe('poolview-targets');
    // Entries given are merged into the chart's (one empty key per filter, as config/yurt-hub-cfg.yaml).
    expect(cm.data).toEqual({ ...EMPTY_TARGETS, servicetopology: 'cilium-agent, traefik', nodeportisolation: 'cilium-agent' });
    expect(tuned.find((o) => o.kind === 'Role')!.rules[0].resourceNames).toEqual(['poolview-targets']);

    const plain = await stored('plain');
    const ns = VALUE_SETS.plain!.namespace;
    expect(plain.map((o) => `${o.kind}/${o.metadata!.name}`).sort()).toEqual(
      ['ClusterRole/edge-poolview', 'ClusterRoleBinding/edge-poolview', 'DaemonSet/edge-poolview', 'Role/edge-poolview', 'RoleBinding/edge-poolview', 'ServiceAccount/edge-poolview'],
    );
    const plainPod = podOf(plain);
    expect(plainPod.nodeSelector).toBeUndefined();
    expect(plainPod.serviceAccountName).toBe('edge-poolview');
    expect(plainPod.containers[0].args).toEqual(['--bind-address=127.0.0.1', '--port=10261', '--health-port=10267', '--anonymous-requests=proxy-identity', `--configmap-namespace=${ns}`]);
    expect(plainPod.containers[0].ports.map((p: Obj) => p.name)).toEqual(['proxy', 'health']);
    expect(plainPod.volumes.map((v: Obj) => v.name)).toEqual(['tmp']);
    expect(plain.find((o) => o.kind === 'ClusterRoleBinding')!.subjects).toEqual([{ kind: 'ServiceAccount', name: 'edge-poolview', namespace: ns }]);
  });

  it('every rendered argument is a poolview flag that poolview accepts', async () => {
    // As `poolview serve` checks its invocation before any I/O (NODE_NAME from the downward API).
    const accepted = (args: string[]) => resolveOptions(parseServeArgs(args, { NODE_NAME: 'edge-1' }));
    const known = new Set(FLAGS.map((f) => f.flag));
    for (const name of Object.keys(VALUE_SETS)) {
      const args: string[] = podOf((await render(name)).objects).containers[0].args;
      for (const a of args) expect(known.has(/^--([a-z0-9-]+)=/.exec(a)?.[1] ?? ''), `${name}: ${a}`).toBe(true);
      expect(() => accepted(args), `${name}: ${args.join(' ')}`).not.toThrow();
    }
    const tuned = accepted(podOf((await render('tuned')).objects).containers[0].args);
    expect(tuned).toMatchObject({ featureGates: { NodePortAutoListen: true, ViewTransitions: false }, anonymousRequests: 'reject', nodePoolName: 'hangzhou' });
  });

  it('refuses values poolview would refuse, with one line saying why', async () => {
    const bad = async (...set: string[]) => {
      const r = await helm.run(['template', 'poolview', CHART, '--namespace', 'kube-system', ...set.flatMap((s) => ['--set', s])]);
      expect(r.code).not.toBe(0);
      return r.stderr;
    };
    expect(await bad('servingCertificate.mode=files')).toContain('servingCertificate.mode must be secret, csr or none, not "files"');
    expect(await bad('anonymousRequests=allow')).toContain('anonymousRequests must be forward, reject or proxy-identity');
    expect(await bad('anonymousRequests=proxy-identity', 'bindAddress=0.0.0.0')).toContain('bindAddress must be a loopback address');
  });
});
