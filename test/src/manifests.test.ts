// Deploy artifacts: the manifests in config/ and the Dockerfile. Neither a cluster nor a Docker
// engine is needed here; the e2e suite applies the manifests with `kubectl apply --dry-run=server`.
// These tests pin the invariants an operator relies on and cross-check the artifacts against the
// code (flags the DaemonSet passes exist, the ConfigMap keys name real filters, the image's
// entrypoint resolves to files `npm run build` emits).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { builtinFilters } from '../../filters/index.js';
import { DEFAULTS, FLAGS } from '../../src/options.js';
import { Targeting } from '../../src/targeting.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CONFIG = join(ROOT, 'config');

type Obj = Record<string, any>;

function loadYaml(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const out: Obj[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0].message}`);
    const value = doc.toJS() as Obj | null;
    if (value !== null && value !== undefined) out.push(value);
  }
  return out;
}

const kustomization = loadYaml(join(CONFIG, 'kustomization.yaml'))[0];
const resourceFiles: string[] = kustomization.resources ?? [];
const objects: Obj[] = resourceFiles.flatMap((f) => loadYaml(join(CONFIG, f)));

function find(kind: string, name?: string): Obj {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name));
  expect(found, `${kind}${name ? ' ' + name : ''} in config/`).toHaveLength(1);
  return found[0];
}

const CLUSTER_SCOPED = new Set(['ClusterRole', 'ClusterRoleBinding', 'Namespace', 'PriorityClass']);

describe('config/kustomization.yaml', () => {
  it('lists files that exist and parse, and every manifest in config/ is listed', () => {
    expect(kustomization.apiVersion).toBe('kustomize.config.k8s.io/v1beta1');
    expect(kustomization.kind).toBe('Kustomization');
    expect(resourceFiles).toEqual(expect.arrayContaining(['daemonset.yaml', 'serviceaccount.yaml', 'rbac.yaml', 'yurt-hub-cfg.yaml']));
    for (const f of resourceFiles) expect(existsSync(join(CONFIG, f)), f).toBe(true);
    expect(new Set(resourceFiles).size).toBe(resourceFiles.length);
  });

  it('every object is well-formed and namespaced objects live in kube-system', () => {
    const seen = new Set<string>();
    for (const o of objects) {
      expect(typeof o.apiVersion).toBe('string');
      expect(typeof o.kind).toBe('string');
      expect(o.metadata?.name, `${o.kind} name`).toMatch(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
      if (CLUSTER_SCOPED.has(o.kind)) expect(o.metadata.namespace).toBeUndefined();
      else expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe('kube-system');
      const key = `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
      expect(seen.has(key), `duplicate ${key}`).toBe(false);
      seen.add(key);
    }
  });
});

describe('config/daemonset.yaml', () => {
  const ds = find('DaemonSet', 'poolview');
  const pod = ds.spec.template.spec;
  const container = pod.containers[0];
  const args: string[] = container.args;
  const arg = (flag: string) => args.find((a) => a.startsWith(`--${flag}=`))?.slice(flag.length + 3);

  it('runs on every node in the host network, kube-system, node-critical', () => {
    expect(ds.apiVersion).toBe('apps/v1');
    expect(ds.metadata.namespace).toBe('kube-system');
    expect(pod.hostNetwork).toBe(true);
    expect(pod.dnsPolicy).toBe('ClusterFirstWithHostNet');
    expect(pod.priorityClassName).toBe('system-node-critical');
    expect(pod.tolerations).toContainEqual({ operator: 'Exists' });
    expect(ds.spec.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '10%' } });
    for (const [k, v] of Object.entries(ds.spec.selector.matchLabels)) expect(ds.spec.template.metadata.labels[k]).toBe(v);
    expect(pod.containers).toHaveLength(1);
  });

  it('uses the ServiceAccount of serviceaccount.yaml and the in-cluster config', () => {
    const sa = find('ServiceAccount');
    expect(pod.serviceAccountName).toBe(sa.metadata.name);
    expect(pod.automountServiceAccountToken).not.toBe(false);
    expect(args.some((a) => a.startsWith('--kubeconfig'))).toBe(false);
    expect((container.env ?? []).some((e: Obj) => e.name === 'KUBECONFIG')).toBe(false);
  });

  it('takes NODE_NAME from the downward API', () => {
    const env = (container.env as Obj[]).find((e) => e.name === 'NODE_NAME');
    expect(env?.valueFrom).toEqual({ fieldRef: { fieldPath: 'spec.nodeName' } });
    expect(env?.value).toBeUndefined();
  });

  it("passes yurt-hub's ports and only flags poolview knows", () => {
    expect(arg('bind-address')).toBe('127.0.0.1');
    expect(arg('port')).toBe('10261');
    expect(arg('secure-port')).toBe('10268');
    expect(arg('health-port')).toBe('10267');
    const known = new Set(FLAGS.map((f) => f.flag));
    for (const a of args) {
      const m = /^--([a-z0-9-]+)=(.*)$/.exec(a);
      expect(m, `${a} is --flag=value`).not.toBeNull();
      expect(known.has(m![1]), `${a} is a poolview flag`).toBe(true);
    }
    const ports = (container.ports as Obj[]).map((p) => p.containerPort).sort();
    expect(ports).toEqual([10261, 10267, 10268]);
  });

  it('reads the serving certificate from an optional Secret volume', () => {
    const cert = arg('tls-cert-file')!;
    const key = arg('tls-private-key-file')!;
    expect(cert).toBeTruthy();
    expect(key).toBeTruthy();
    const mount = (container.volumeMounts as Obj[]).find((m) => cert.startsWith(m.mountPath + '/'));
    expect(mount, 'a volume mounted where --tls-cert-file points').toBeDefined();
    expect(key.startsWith(mount!.mountPath + '/')).toBe(true);
    expect(mount!.readOnly).toBe(true);
    const volume = (pod.volumes as Obj[]).find((v) => v.name === mount!.name);
    expect(volume?.secret?.optional).toBe(true);
    expect(volume?.secret?.secretName).toBeTruthy();
    // Files readable by the non-root user: through fsGroup, or world-readable.
    const mode: number = volume!.secret.defaultMode ?? 0o644;
    expect(pod.securityContext.fsGroup === pod.securityContext.runAsUser || (mode & 0o004) !== 0).toBe(true);
  });

  it('probes /livez and /readyz on the health port 10267', () => {
    expect(container.livenessProbe.httpGet).toMatchObject({ path: '/livez', port: 10267 });
    expect(container.readinessProbe.httpGet).toMatchObject({ path: '/readyz', port: 10267 });
    // Health listens with the proxy on the --bind-address; the kubelet shares the host network.
    expect(container.livenessProbe.httpGet.host).toBe(arg('bind-address'));
    expect(container.readinessProbe.httpGet.host).toBe(arg('bind-address'));
  });

  it('requests 50m/128Mi and is limited to 300Mi (the measured peak at 10k Services + 10k slices is about 200 MiB)', () => {
    expect(container.resources).toEqual({ requests: { cpu: '50m', memory: '128Mi' }, limits: { memory: '300Mi' } });
  });

  it('runs non-root, read-only, without privileges, and /tmp is the only writable path', () => {
    const sc = container.securityContext;
    expect(sc.runAsNonRoot ?? pod.securityContext?.runAsNonRoot).toBe(true);
    expect(sc.runAsUser ?? pod.securityContext?.runAsUser).toBe(65532);
    expect(sc.readOnlyRootFilesystem).toBe(true);
    expect(sc.allowPrivilegeEscalation).toBe(false);
    expect(sc.privileged).not.toBe(true);
    expect(sc.capabilities).toEqual({ drop: ['ALL'] });
    const writable = (container.volumeMounts as Obj[]).filter((m) => !m.readOnly);
    expect(writable.map((m) => m.mountPath)).toEqual(['/tmp']);
    expect((pod.volumes as Obj[]).find((v) => v.name === writable[0].name)?.emptyDir).toBeDefined();
  });
});

describe('config/rbac.yaml', () => {
  const role = find('ClusterRole', 'poolview');
  const allows = (rules: Obj[], group: string, resource: string, verb: string) =>
    rules.some((r) => (r.apiGroups ?? []).includes(group) && (r.resources ?? []).includes(resource) && r.verbs.includes(verb));

  it('ClusterRole is read-only: get/list/watch, no wildcards', () => {
    for (const rule of role.rules as Obj[]) {
      for (const verb of rule.verbs) expect(['get', 'list', 'watch'], JSON.stringify(rule)).toContain(verb);
      for (const field of ['apiGroups', 'resources', 'verbs', 'nonResourceURLs']) {
        expect(rule[field] ?? [], `${field} of ${JSON.stringify(rule)}`).not.toContain('*');
      }
    }
  });

  it("covers every scope source: services, endpoints, endpointslices, nodes, nodepools", () => {
    const needed: Array<[string, string]> = [
      ['', 'services'],
      ['', 'endpoints'],
      ['', 'nodes'],
      ['discovery.k8s.io', 'endpointslices'],
      ['apps.openyurt.io', 'nodepools'],
    ];
    for (const [group, resource] of needed) {
      for (const verb of ['list', 'watch']) expect(allows(role.rules, group, resource, verb), `${verb} ${group}/${resource}`).toBe(true);
    }
    const nonResource = (role.rules as Obj[]).filter((r) => r.nonResourceURLs);
    expect(nonResource.flatMap((r) => r.nonResourceURLs).sort()).toEqual(['/readyz', '/version']);
    for (const r of nonResource) expect(r.verbs).toEqual(['get']);
  });

  it('reads ConfigMaps only in kube-system, only the targeting ConfigMap', () => {
    expect(allows(role.rules, '', 'configmaps', 'list')).toBe(false);
    const ns = find('Role', 'poolview');
    expect(ns.metadata.namespace).toBe(DEFAULTS.configMapNamespace);
    expect(ns.rules).toHaveLength(1);
    expect(ns.rules[0]).toMatchObject({ apiGroups: [''], resources: ['configmaps'], resourceNames: [DEFAULTS.configMapName] });
    expect([...ns.rules[0].verbs].sort()).toEqual(['get', 'list', 'watch']);
  });

  it('binds both roles to the poolview ServiceAccount', () => {
    const sa = find('ServiceAccount');
    const subject = { kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace };
    expect(find('ClusterRoleBinding').roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name });
    expect(find('ClusterRoleBinding').subjects).toEqual([subject]);
    expect(find('RoleBinding').roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'poolview' });
    expect(find('RoleBinding').subjects).toEqual([subject]);
  });
});

describe('config/rotate-server-certificates/ (kustomize component)', () => {
  const dir = join(CONFIG, 'rotate-server-certificates');
  const component = loadYaml(join(dir, 'kustomization.yaml'))[0];
  const rbac = loadYaml(join(dir, 'rbac.yaml'));
  const patch = loadYaml(join(dir, 'daemonset-patch.yaml'))[0];

  it('is a Component offered (commented out) by config/kustomization.yaml', () => {
    expect(component).toMatchObject({ apiVersion: 'kustomize.config.k8s.io/v1alpha1', kind: 'Component' });
    for (const f of [...component.resources, ...component.patches.map((p: Obj) => p.path)]) expect(existsSync(join(dir, f)), f).toBe(true);
    expect(readFileSync(join(CONFIG, 'kustomization.yaml'), 'utf8')).toMatch(/^# components:\n#   - rotate-server-certificates$/m);
  });

  it('grants create, get and watch on CertificateSigningRequests to the poolview ServiceAccount, nothing else', () => {
    const role = rbac.find((o) => o.kind === 'ClusterRole')!;
    expect(role.rules).toEqual([{ apiGroups: ['certificates.k8s.io'], resources: ['certificatesigningrequests'], verbs: ['create', 'get', 'watch'] }]);
    const binding = rbac.find((o) => o.kind === 'ClusterRoleBinding')!;
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name });
    const sa = find('ServiceAccount');
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }]);
  });

  it('patches the DaemonSet to --rotate-server-certificates with a hostPath --cert-dir, only flags poolview knows', () => {
    const ds = find('DaemonSet', 'poolview');
    expect(patch.metadata).toEqual({ name: ds.metadata.name, namespace: ds.metadata.namespace });
    const container = patch.spec.template.spec.containers[0];
    expect(container.name).toBe(ds.spec.template.spec.containers[0].name);
    const known = new Set(FLAGS.map((f) => f.flag));
    for (const a of container.args as string[]) expect(known.has(/^--([a-z0-9-]+)=/.exec(a)![1]), a).toBe(true);
    expect(container.args).toContain('--rotate-server-certificates=true');
    const certDir = (container.args as string[]).find((a) => a.startsWith('--cert-dir='))!.slice('--cert-dir='.length);
    expect(container.volumeMounts).toContainEqual({ name: 'pki', mountPath: certDir });
    expect(patch.spec.template.spec.volumes).toContainEqual({ name: 'pki', hostPath: { path: certDir, type: 'DirectoryOrCreate' } });
    // The init container hands that directory to the uid poolview runs as.
    const init = patch.spec.template.spec.initContainers[0];
    expect(init.command).toEqual(['chown', `${ds.spec.template.spec.securityContext.runAsUser}:${ds.spec.template.spec.securityContext.runAsGroup}`, certDir]);
  });
});

describe('config/yurt-hub-cfg.yaml', () => {
  const cm = find('ConfigMap');

  it('is the ConfigMap poolview reads by default, with one empty key per filter', () => {
    expect(cm.metadata.name).toBe(DEFAULTS.configMapName);
    expect(cm.metadata.namespace).toBe(DEFAULTS.configMapNamespace);
    expect(cm.data).toEqual(Object.fromEntries(builtinFilters.map((f) => [f.name, ''])));
    for (const key of Object.keys(cm.data)) expect(builtinFilters.map((f) => f.name)).toContain(key);
    const targeting = new Targeting(builtinFilters);
    expect(targeting.setConfigMap(cm.data).warnings).toEqual([]);
    expect(targeting.version).toBe(0); // defaults only
  });

  it('documents the cilium example, which parses as intended', () => {
    const text = readFileSync(join(CONFIG, 'yurt-hub-cfg.yaml'), 'utf8');
    expect(text).toContain('servicetopology: "cilium-agent"');
    const targeting = new Targeting(builtinFilters);
    expect(targeting.setConfigMap({ servicetopology: 'cilium-agent' }).warnings).toEqual([]);
    expect(targeting.filtersFor('cilium-agent', 'endpointslices', 'list').map((f) => f.name)).toEqual(['servicetopology']);
  });
});

// ---- Dockerfile ------------------------------------------------------------------------------------

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

/** Instructions grouped by stage; comments dropped, line continuations joined, ARGs substituted in FROM. */
function parseDockerfile(text: string): Stage[] {
  const lines: string[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue; // comment inside a continuation
    if (line.endsWith('\\')) pending += line.slice(0, -1) + ' ';
    else {
      lines.push(pending + line);
      pending = '';
    }
  }
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const line of lines) {
    const m = /^(\S+)\s*(.*)$/.exec(line)!;
    const op = m[1].toUpperCase();
    const args = m[2].trim();
    if (op === 'FROM') {
      const fm = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)!;
      const from = fm[1].replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => globalArgs.get(a ?? b) ?? '');
      stages.push({ from, name: fm[2], instructions: [] });
    } else if (stages.length === 0 && op === 'ARG') {
      const am = /^(\w+)=(.*)$/.exec(args);
      if (am) globalArgs.set(am[1], am[2]);
    } else {
      stages.at(-1)!.instructions.push({ op, args });
    }
  }
  return stages;
}

/** COPY sources/destination, without flags (--from, --chown, ...). */
function copyParts(args: string): { from?: string; sources: string[]; dest: string } {
  const words = args.split(/\s+/);
  let from: string | undefined;
  while (words[0]?.startsWith('--')) {
    const flag = words.shift()!;
    if (flag.startsWith('--from=')) from = flag.slice('--from='.length);
  }
  const dest = words.pop()!;
  return { from, sources: words, dest };
}

/** Minimal .dockerignore evaluation: last matching pattern wins, `!` re-includes, a match covers the subtree. */
function dockerIgnored(patterns: string[], path: string): boolean {
  const toRegex = (p: string) =>
    new RegExp(
      '^' +
        p
          .replace(/\/+$/, '')
          .replace(/[.+^${}()|[\]\\]/g, '\\$&')
          .replace(/\*\*\//g, '\u0000')
          .replace(/\*\*/g, '.*')
          .replace(/\*/g, '[^/]*')
          .replace(/\?/g, '[^/]')
          .replace(/\u0000/g, '(?:.*/)?') +
        '(?:/.*)?$',
    );
  let ignored = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const pattern = normalize(negate ? raw.slice(1) : raw).replace(/^\.\//, '');
    if (toRegex(pattern).test(path)) ignored = !negate;
  }
  return ignored;
}

describe('Dockerfile', () => {
  const stages = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
  const runtime = stages.at(-1)!;
  const byName = new Map(stages.filter((s) => s.name).map((s) => [s.name!, s]));
  const ops = (stage: Stage, op: string) => stage.instructions.filter((i) => i.op === op);
  const dockerignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));

  it('is multi-stage on an even-numbered (LTS) Node image at least 24', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages) {
      const m = /^node:(\d+)(?:[.-].*)?$/.exec(s.from);
      expect(m, `FROM ${s.from}`).not.toBeNull();
      const major = Number(m![1]);
      expect(major % 2).toBe(0);
      expect(major).toBeGreaterThanOrEqual(24);
    }
  });

  it('builds with npm ci + npm run build, and ships production dependencies only', () => {
    const build = stages.find((s) => ops(s, 'RUN').some((r) => /\bnpm run build\b/.test(r.args)));
    expect(build, 'a stage runs npm run build').toBeDefined();
    expect(build).not.toBe(runtime);
    expect(ops(build!, 'RUN').some((r) => /\bnpm ci\b/.test(r.args))).toBe(true);
    const runtimeRuns = ops(runtime, 'RUN').map((r) => r.args);
    expect(runtimeRuns.some((r) => /\bnpm ci\b/.test(r) && /--omit=dev\b/.test(r) && /--ignore-scripts\b/.test(r))).toBe(true);
    expect(runtimeRuns.some((r) => /\bnpm (install|i)\b/.test(r))).toBe(false);
    // Nothing from the build stage but dist/.
    for (const c of ops(runtime, 'COPY').map((i) => copyParts(i.args)).filter((c) => c.from)) {
      expect(c.sources.map((s) => s.replace(/\/+$/, '').split('/').at(-1))).toEqual(['dist']);
    }
  });

  it('runs as uid 65532 with an exec-form node entrypoint and the proxy/health ports exposed', () => {
    const user = ops(runtime, 'USER').at(-1)?.args;
    expect(user).toMatch(/^65532(:65532)?$/);
    const entrypoint = ops(runtime, 'ENTRYPOINT').at(-1)!.args;
    expect(JSON.parse(entrypoint)).toEqual(['node', 'bin/poolview.js']);
    expect(ops(runtime, 'CMD')).toEqual([]);
    const exposed = ops(runtime, 'EXPOSE').flatMap((i) => i.args.split(/\s+/)).map((p) => p.replace(/\/tcp$/, ''));
    expect(exposed.sort()).toEqual(['10261', '10267', '10268']);
    // HOME must be writable under readOnlyRootFilesystem.
    expect(ops(runtime, 'ENV').some((e) => /\bHOME=\/tmp\b/.test(e.args))).toBe(true);
    // The malloc setting the memory benchmark runs poolview with (bench/main.ts IMAGE_ENV).
    expect(ops(runtime, 'ENV').some((e) => /\bMALLOC_MMAP_THRESHOLD_=65536\b/.test(e.args))).toBe(true);
  });

  it('COPYs only context files that exist and that .dockerignore lets through', () => {
    for (const stage of stages) {
      for (const c of ops(stage, 'COPY').map((i) => copyParts(i.args))) {
        if (c.from) continue;
        for (const src of c.sources) {
          const path = src.replace(/\/+$/, '');
          expect(existsSync(join(ROOT, path)), `COPY ${src} exists`).toBe(true);
          expect(dockerIgnored(dockerignore, path), `COPY ${src} is in the build context`).toBe(false);
        }
      }
    }
    for (const secretish of ['node_modules', 'dist', '.git', 'test/e2e', 'test/fake/apiserver.test.ts', 'bench', 'kubeconfig', '.env']) {
      expect(dockerIgnored(dockerignore, secretish), `${secretish} stays out of the context`).toBe(true);
    }
  });

  it('copies from the build stage what `npm run build` emits', () => {
    const tsconfig = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8'));
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    expect(pkg.scripts.build).toMatch(/\btsc -p tsconfig\.json\b/);
    for (const c of ops(runtime, 'COPY').map((i) => copyParts(i.args)).filter((c) => c.from)) {
      const stage = byName.get(c.from!);
      expect(stage, `stage ${c.from}`).toBeDefined();
      const workdir = ops(stage!, 'WORKDIR').at(-1)!.args;
      for (const src of c.sources) {
        expect(relative(workdir, src.replace(/\/+$/, ''))).toBe(normalize(tsconfig.compilerOptions.outDir));
      }
      // The build stage has the inputs tsc compiles.
      const copied = ops(stage!, 'COPY').flatMap((i) => copyParts(i.args).sources.map((s) => s.replace(/\/+$/, '')));
      for (const input of [...tsconfig.include, 'tsconfig.json', 'package-lock.json']) expect(copied).toContain(input);
    }
  });

  it('every package.json "bin" entry (poolview, the kubectl plugin) exists and imports only files the build emits', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    expect(Object.keys(pkg.bin).sort()).toEqual(['kubectl-poolview', 'poolview']);
    const tsconfig = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8'));
    const outDir = normalize(tsconfig.compilerOptions.outDir);
    for (const file of Object.values(pkg.bin) as string[]) {
      const entry = join(ROOT, file);
      expect(existsSync(entry), file).toBe(true);
      expect(statSync(entry).mode & 0o111, `${file} is executable (kubectl looks for executables)`).not.toBe(0);
      const text = readFileSync(entry, 'utf8');
      expect(text.startsWith('#!/usr/bin/env node\n'), `${file} has a node shebang`).toBe(true);
      const specifiers = [...text.matchAll(/(?:import|from)\s*\(?\s*['"](\.[^'"]+)['"]/g)].map((m) => m[1]);
      expect(specifiers.length, `${file} imports the compiled CLI`).toBeGreaterThan(0);
      for (const spec of specifiers) {
        const target = relative(ROOT, join(dirname(entry), spec));
        expect(target.startsWith(outDir + '/'), `${spec} points into ${outDir}/`).toBe(true);
        const source = target.slice(outDir.length + 1).replace(/\.js$/, '.ts');
        expect(tsconfig.include.some((dir: string) => source.startsWith(dir + '/')), `${source} is compiled`).toBe(true);
        expect(existsSync(join(ROOT, source)), `${source} exists`).toBe(true);
      }
    }
  });

});
