// Shipping checks that need the real apiserver:
// (a) the manifests in config/ (and with its component rotate-server-certificates/) pass
//     `kubectl apply -k --dry-run=server`, and the RBAC they ship is enough for poolview (and
//     `poolview view`, and --rotate-server-certificates) running as their ServiceAccount, no more;
// (b) an in-cluster-style client (KUBERNETES_SERVICE_HOST/PORT, token and ca.crt files, as client-go's
//     in-cluster config and @kubernetes/client-node's loadFromCluster read them) lists Services
//     through poolview's HTTPS port with the serving certificate verified against the cluster CA;
// (c) `poolview view --node N --component kube-proxy -o json` lists exactly the Services and
//     endpoints a real kube-proxy reading through poolview programs for that node.
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { AuthenticationV1Api, CoreV1Api, KubeConfig, Observable, type ConfigurationOptions, type V1Service } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPoolview } from '../../src/app.js';
import { run as runView, type ViewReport } from '../../src/commands/view.js';
import { createLogger } from '../../src/log.js';
import type { Cluster } from '../support/cluster.js';
import { createNodeNetns, describeWithKubeProxy, startKubeProxy, type KubeProxy, type NodeNetns, type ProxyRules } from '../support/kube-proxy.js';
import { startTestPoolview, type TestPoolview } from '../support/poolview.js';
import { expectDryRunLines, parseObjects, unexpectedApplyWarnings, type Obj } from '../support/manifests.js';
import { poll, runOk } from '../support/processes.js';
import { sharedCluster, uniqueName } from '../support/shared-cluster.js';

const CONFIG = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'config');
const LISTEN = 'nodeport.openyurt.io/listen';
const AUTO_LISTEN = 'nodeport.openyurt.io/auto-listen';
const TOPOLOGY = 'openyurt.io/topologyKeys';

const cluster = sharedCluster();
const scratch = mkdtempSync(join(tmpdir(), 'poolview-ship-'));
const cleanups: (() => Promise<unknown>)[] = [];

afterAll(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => {});
  rmSync(scratch, { recursive: true, force: true });
  await cluster.close();
});

function loadConfig(file: string): Obj[] {
  return parseObjects(readFileSync(join(CONFIG, file), 'utf8'));
}

/** A bound token for a ServiceAccount (TokenRequest), as the kubelet projects into a pod. */
async function serviceAccountToken(namespace: string, name: string): Promise<string> {
  const { body } = await cluster.request<{ status: { token: string } }>('POST', `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`, {
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 } },
  });
  return body.status.token;
}

/** A kubeconfig file for `server` with a bearer token (the cluster CA verifies the server). */
function tokenKubeconfig(name: string, server: string, token: string): string {
  const file = join(scratch, `${name}.kubeconfig.json`);
  writeFileSync(
    file,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server, 'certificate-authority': cluster.caFile } }],
      users: [{ name: 'u', user: { token } }],
      contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'c',
    }),
    { mode: 0o600 },
  );
  return file;
}

/** `poolview view` in-process; stdout and stderr captured. */
async function poolviewView(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runView(argv, { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, env: {} });
  return { code, stdout, stderr };
}

// ---------------------------------------------------------------------------------------------------
// (a) config/

describe('config/ against the real apiserver', () => {
  it('kubectl apply -k config/ --dry-run=server (admin) accepts every manifest', async () => {
    const expected = loadConfig('kustomization.yaml')[0]!.resources.flatMap((f: string) => loadConfig(f));
    // Prerequisites the manifests assume of any cluster: kube-system and the system-node-critical
    // PriorityClass (both made by the apiserver itself).
    expect(await cluster.get('v1', 'Namespace', 'kube-system')).toBeDefined();
    expect(await cluster.get('scheduling.k8s.io/v1', 'PriorityClass', 'system-node-critical')).toBeDefined();

    // Client-side apply, exactly as the kustomization's header says.
    const r = await cluster.kubectl(['apply', '-k', CONFIG, '--dry-run=server'], { timeoutMs: 60_000 });
    expect(r.code, `kubectl apply -k config/ --dry-run=server\n${r.stdout}${r.stderr}`).toBe(0);
    // The only stderr tolerated: the last-applied warning for the ClusterRole/Binding "poolview" the
    // e2e harness itself created (server-side) under the same names.
    expect(unexpectedApplyWarnings(r.stderr), r.stderr).toEqual([]);
    expectDryRunLines(r.stdout, expected);

    // Server-side apply too, on the kustomize output. The harness's own ClusterRole/Binding "poolview"
    // (field manager poolview-e2e) would conflict on .rules/.subjects, so those two are renamed here;
    // on a cluster without them the names do not matter.
    const rendered = await cluster.kubectl(['kustomize', CONFIG]);
    expect(rendered.code, rendered.stderr).toBe(0);
    const docs = parseObjects(rendered.stdout);
    const clash = (o: Obj) => o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding';
    for (const o of docs) {
      if (clash(o)) o.metadata!.name = `${o.metadata!.name}-ssa-dry-run`;
      if (o.kind === 'ClusterRoleBinding') o.roleRef.name = `${o.roleRef.name}-ssa-dry-run`;
    }
    const ssa = await cluster.kubectl(['apply', '--server-side', '--dry-run=server', '-f', '-'], {
      input: docs.map((d) => JSON.stringify(d)).join('\n---\n'),
      timeoutMs: 60_000,
    });
    expect(ssa.code, `kubectl apply --server-side --dry-run=server (kustomize config/)\n${ssa.stdout}${ssa.stderr}`).toBe(0);
    expect(ssa.stderr).toBe('');
    expectDryRunLines(ssa.stdout, docs);

    // What the apiserver would store for the DaemonSet: the kustomize image tag and a valid pod template.
    const list = await cluster.kubectlJson<{ items: Obj[] }>(['apply', '-k', CONFIG, '--dry-run=server', '-o', 'json'], { timeoutMs: 60_000 });
    const ds = list.items.find((o) => o.kind === 'DaemonSet')!;
    expect(ds.metadata!.namespace).toBe('kube-system');
    expect(ds.spec.template.spec.containers[0].image).toBe('poolview:0.1.0');
    expect(ds.spec.template.spec.serviceAccountName).toBe('poolview');
    // Nothing was created.
    expect(await cluster.get('apps/v1', 'DaemonSet', 'poolview', 'kube-system')).toBeUndefined();
    expect(await cluster.get('v1', 'ServiceAccount', 'poolview', 'kube-system')).toBeUndefined();
  });

  it('the shipped RBAC (ServiceAccount kube-system/poolview) is enough for poolview and `poolview view`', async () => {
    // Apply serviceaccount.yaml and rbac.yaml for real; the cluster-scoped objects get a unique name
    // (the harness owns ClusterRole/Binding "poolview" for its own poolview identity).
    const suffix = uniqueName('ship');
    const applyShipped = async (files: string[]) => {
      const objects = files.flatMap(loadConfig).map((o) => {
        const copy = structuredClone(o);
        if (o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding') copy.metadata!.name = `${o.metadata!.name}-${suffix}`;
        if (o.kind === 'ClusterRoleBinding') copy.roleRef.name = `${o.roleRef.name}-${suffix}`;
        return copy;
      });
      for (const o of objects) {
        expect(await cluster.get(o.apiVersion!, o.kind!, o.metadata!.name!, o.metadata!.namespace), `${o.kind} ${o.metadata!.name} must not exist yet`).toBeUndefined();
        await cluster.apply(o);
        cleanups.push(() => cluster.delete(o.apiVersion!, o.kind!, o.metadata!.name!, o.metadata!.namespace));
      }
    };
    await applyShipped(['serviceaccount.yaml', 'rbac.yaml']);
    const token = await serviceAccountToken('kube-system', 'poolview');
    const kubeconfig = tokenKubeconfig('poolview-sa', cluster.server, token);
    const can = async (...args: string[]) => (await cluster.kubectl(['--kubeconfig', kubeconfig, 'auth', 'can-i', ...args])).stdout.trim();
    // The apiserver's ServiceAccount authenticator reads from its own cache: wait until it knows the account.
    await poll('ServiceAccount token accepted', async () => {
      const r = await cluster.kubectl(['--kubeconfig', kubeconfig, 'auth', 'whoami', '-o', 'json']);
      return r.code === 0 && JSON.parse(r.stdout).status.userInfo.username === 'system:serviceaccount:kube-system:poolview';
    }, 15_000, 200);

    const node = uniqueName('ship-sa-node');
    await cluster.createNode(node, { internalIP: '10.250.254.9', pool: 'ship-sa-pool' });
    cleanups.push(() => cluster.delete('v1', 'Node', node));
    const logFile = join(cluster.workDir, `poolview-${node}.log`);
    const stream = createWriteStream(logFile, { flags: 'a' });
    const pv = await startPoolview(
      {
        nodeName: node,
        kubeconfig,
        bindAddress: '127.0.0.1',
        port: 0,
        healthPort: 0,
        featureGates: { NodePortAutoListen: true },
      },
      { logger: createLogger('info', stream), probeIntervalMs: 500 },
    );
    try {
      // Every scope source syncs and the upstream probe passes with exactly the shipped permissions.
      const ready = await poll('poolview /readyz with the shipped RBAC', async () => {
        const res = await fetch(`${pv.healthUrl}/readyz?verbose`);
        const text = await res.text();
        return res.status === 200 ? text : undefined;
      }, 20_000, 200).catch(async (err: Error) => {
        const res = await fetch(`${pv.healthUrl}/readyz?verbose`);
        throw new Error(`${err.message}\n${await res.text()}\n--- poolview log ---\n${readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n')}`);
      });
      expect(ready).toMatch(/ok/);
      const view = await poolviewView(['--node', node, '--kubeconfig', kubeconfig, '-o', 'json', '--feature-gates', 'NodePortAutoListen=true']);
      expect(view.stderr).toBe('');
      expect(view.code).toBe(0);
      expect((JSON.parse(view.stdout) as ViewReport).pool).toBe('ship-sa-pool');
      // And not more than it needs: no secrets, no writes, no other kube-system ConfigMaps.
      expect(await can('list', 'secrets', '-A')).toBe('no');
      expect(await can('update', 'services', '-A')).toBe('no');
      expect(await can('get', 'configmaps/kube-proxy', '-n', 'kube-system')).toBe('no');
      expect(await can('get', 'configmaps/yurt-hub-cfg', '-n', 'kube-system')).toBe('yes');
      expect(await can('create', 'certificatesigningrequests')).toBe('no');
    } finally {
      await pv.close();
      await new Promise<void>((r) => stream.end(r));
    }

    // The component rotate-server-certificates/ adds what --rotate-server-certificates needs, no more.
    await applyShipped(['rotate-server-certificates/rbac.yaml']);
    await poll('the CSR ClusterRole bound', async () => (await can('create', 'certificatesigningrequests')) === 'yes', 15_000, 200);
    const csrLogFile = join(cluster.workDir, `poolview-${node}-csr.log`);
    const csrStream = createWriteStream(csrLogFile, { flags: 'a' });
    const csrPv = await startPoolview(
      { nodeName: node, kubeconfig, bindAddress: '127.0.0.1', port: 0, healthPort: 0, securePort: 0, rotateServerCertificates: true, certDir: join(scratch, 'ship-pki') },
      { logger: createLogger('info', csrStream), probeIntervalMs: 500 },
    );
    try {
      const csr = await poll('poolview\'s CertificateSigningRequest', async () => {
        const list = await cluster.list<Obj>('certificates.k8s.io/v1', 'CertificateSigningRequest');
        return list.items.find((c) => c.metadata!.name!.startsWith(`poolview-${node}-`));
      }, 20_000, 200);
      cleanups.push(() => cluster.delete('certificates.k8s.io/v1', 'CertificateSigningRequest', csr.metadata!.name!));
      expect(csr.spec.username).toBe('system:serviceaccount:kube-system:poolview');
      // Created and followed (get, watch) without a 403: poolview waits for an approver.
      const ready = await poll('/readyz names the pending CSR', async () => {
        const text = await (await fetch(`${csrPv.healthUrl}/readyz?verbose`)).text();
        return text.includes('waiting for approval') ? text : undefined;
      }, 20_000, 200);
      expect(ready).toContain(`[-]serving-certificate failed: waiting for approval of CertificateSigningRequest ${csr.metadata!.name}`);
      expect(readFileSync(csrLogFile, 'utf8')).not.toMatch(/cannot get a serving certificate|forbidden/i);
      // Never approving, signing, changing or reading others' requests in bulk.
      expect(await can('list', 'certificatesigningrequests')).toBe('no');
      expect(await can('delete', 'certificatesigningrequests')).toBe('no');
      expect(await can('update', 'certificatesigningrequests', '--subresource=approval')).toBe('no');
      expect(await can('update', 'certificatesigningrequests', '--subresource=status')).toBe('no');
      expect(await can('approve', 'signers.certificates.k8s.io/kubernetes.io/kubelet-serving')).toBe('no');
      expect(await can('sign', 'signers.certificates.k8s.io/kubernetes.io/kubelet-serving')).toBe('no');
    } finally {
      await csrPv.close();
      await new Promise<void>((r) => csrStream.end(r));
    }
  });

  it('the component rotate-server-certificates/ passes a server dry-run and replaces the Secret with a cert-dir', async () => {
    // An overlay of config/ with the component, as an operator would write it next to config/.
    const overlay = mkdtempSync(join(scratch, 'overlay-'));
    const base = relative(overlay, CONFIG);
    writeFileSync(
      join(overlay, 'kustomization.yaml'),
      ['apiVersion: kustomize.config.k8s.io/v1beta1', 'kind: Kustomization', 'resources:', `  - ${base}`, 'components:', `  - ${base}/rotate-server-certificates`, ''].join('\n'),
    );
    const list = await cluster.kubectlJson<{ items: Obj[] }>(['apply', '-k', overlay, '--dry-run=server', '-o', 'json'], { timeoutMs: 60_000 });
    const kinds = list.items.map((o) => `${o.kind}/${o.metadata!.name}`);
    expect(kinds).toEqual(expect.arrayContaining(['ClusterRole/poolview-serving-csr', 'ClusterRoleBinding/poolview-serving-csr', 'DaemonSet/poolview']));
    const pod = list.items.find((o) => o.kind === 'DaemonSet')!.spec.template.spec;
    const container = pod.containers[0];
    expect(container.args).toEqual(expect.arrayContaining(['--rotate-server-certificates=true', '--cert-dir=/var/lib/poolview/pki', '--secure-port=10268']));
    expect(container.args.some((a: string) => a.startsWith('--tls-'))).toBe(false);
    expect(container.volumeMounts.map((m: Obj) => m.mountPath).sort()).toEqual(['/tmp', '/var/lib/poolview/pki']);
    expect(pod.volumes.find((v: Obj) => v.name === 'pki').hostPath).toEqual({ path: '/var/lib/poolview/pki', type: 'DirectoryOrCreate' });
    expect(pod.volumes.some((v: Obj) => v.secret)).toBe(false);
    // The init container only hands the hostPath to poolview's uid.
    expect(pod.initContainers.map((c: Obj) => c.command)).toEqual([['chown', '65532:65532', '/var/lib/poolview/pki']]);
    expect(pod.initContainers[0].image).toBe('poolview:0.1.0');
    expect(pod.initContainers[0].securityContext.capabilities).toEqual({ drop: ['ALL'], add: ['CHOWN'] });
    expect(await cluster.get('apps/v1', 'DaemonSet', 'poolview', 'kube-system')).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------------
// (b) in-cluster client over HTTPS

describe('an in-cluster-style client through poolview over HTTPS', () => {
  const ns = uniqueName('ship-ic');
  const pool = uniqueName('ship-ic-pool');
  const node = uniqueName('ship-ic-node');
  let pv: TestPoolview;
  let token: string;

  beforeAll(async () => {
    await cluster.createNamespace(ns);
    cleanups.push(() => cluster.delete('v1', 'Namespace', ns));
    await cluster.createNodePool(pool, { nodes: [node] });
    cleanups.push(() => cluster.delete('apps.openyurt.io/v1beta2', 'NodePool', pool));
    await cluster.createNode(node, { internalIP: '10.250.254.10', pool });
    cleanups.push(() => cluster.delete('v1', 'Node', node));
    const np = (name: string, listen: string) =>
      cluster.createService(ns, name, { type: 'NodePort', ports: [{ name: 'http', port: 80, targetPort: 8080 }], annotations: { [LISTEN]: listen } });
    await np('np-here', pool);
    await np('np-elsewhere', 'some-other-pool');
    await cluster.createService(ns, 'cip', { ports: [{ name: 'http', port: 80, targetPort: 8080 }] });
    // A pod's identity: a ServiceAccount allowed to read the namespace, with a bound token.
    await cluster.apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'reader', namespace: ns } });
    // (A Role of its own: the aggregated ClusterRole "view" is empty without kube-controller-manager.)
    await cluster.apply({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'reader', namespace: ns },
      rules: [{ apiGroups: [''], resources: ['services'], verbs: ['get', 'list', 'watch'] }],
    });
    await cluster.apply({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'reader', namespace: ns },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'reader' },
      subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: ns }],
    });
    token = await serviceAccountToken(ns, 'reader');
    pv = await startTestPoolview(cluster, { nodeName: node });
    cleanups.push(() => pv.close());
  });

  /** A directory laid out as a pod's /var/run/secrets/kubernetes.io/serviceaccount, under a prefix. */
  function podFiles(caFile: string): string {
    const prefix = mkdtempSync(join(scratch, 'pod-'));
    const dir = join(prefix, 'var/run/secrets/kubernetes.io/serviceaccount');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'token'), token);
    copyFileSync(caFile, join(dir, 'ca.crt'));
    writeFileSync(join(dir, 'namespace'), ns);
    return prefix;
  }

  /** KubeConfig.loadFromCluster() with KUBERNETES_SERVICE_HOST/PORT pointing at poolview's HTTPS port. */
  function inClusterConfig(prefix: string): KubeConfig {
    const url = new URL(pv.httpsUrl);
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    process.env.KUBERNETES_SERVICE_HOST = url.hostname;
    process.env.KUBERNETES_SERVICE_PORT = url.port;
    try {
      const kc = new KubeConfig();
      kc.loadFromCluster(prefix);
      return kc;
    } finally {
      for (const [k, v] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  }

  /** Per-request options that send the given User-Agent (how a component names itself to poolview). */
  const asComponent = (userAgent: string): ConfigurationOptions => ({
    middleware: [
      {
        pre: (ctx) => {
          ctx.setHeaderParam('User-Agent', userAgent);
          return new Observable(Promise.resolve(ctx));
        },
        post: (ctx) => new Observable(Promise.resolve(ctx)),
      },
    ],
    middlewareMergeStrategy: 'append',
  });

  const requestsCounted = async (component: string): Promise<number> => {
    const metric = pv.registry.getSingleMetric('poolview_requests_total');
    let sum = 0;
    for (const v of (await metric!.get()).values) if (v.labels.component === component && v.labels.resource === 'services' && v.labels.verb === 'list') sum += v.value;
    return sum;
  };

  it('lists Services with the token and cluster CA from the pod files; the certificate is verified', async () => {
    const kc = inClusterConfig(podFiles(cluster.caFile));
    const current = kc.getCurrentCluster()!;
    expect(current.server).toBe(pv.httpsUrl);
    expect(current.skipTLSVerify).toBe(false);
    const api = kc.makeApiClient(CoreV1Api);

    // Who poolview forwarded: the pod's ServiceAccount, not poolview's own identity.
    const review = await kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' } });
    expect(review.status?.userInfo?.username).toBe(`system:serviceaccount:${ns}:reader`);

    const names = (items: V1Service[]) => items.map((s) => s.metadata?.name).sort();
    const plain = await api.listNamespacedService({ namespace: ns });
    expect(names(plain.items)).toEqual(['cip', 'np-elsewhere', 'np-here']);

    // The same client as a component nodeportisolation targets: the filtered view, over the same path.
    const before = await requestsCounted('kube-proxy');
    const filtered = await api.listNamespacedService({ namespace: ns }, asComponent('kube-proxy/v1.35.4 (linux/amd64) kubernetes/e2e'));
    expect(names(filtered.items)).toEqual(['cip', 'np-here']);
    expect(await requestsCounted('kube-proxy')).toBe(before + 1);
  });

  it('refuses poolview when ca.crt is another CA (no insecure skip anywhere)', async () => {
    const other = join(scratch, 'other-ca');
    await runOk('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${other}.key`, '-out', `${other}.crt`, '-days', '1', '-subj', '/CN=not-the-cluster-ca']);
    const api = inClusterConfig(podFiles(`${other}.crt`)).makeApiClient(CoreV1Api);
    const err = await api.listNamespacedService({ namespace: ns }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err, 'a list against an untrusted certificate must fail').toBeDefined();
    const text = `${err!.message} ${String((err as { cause?: unknown }).cause ?? '')} ${(err as { code?: string }).code ?? ''}`;
    expect(text).toMatch(/certificate|self[- ]signed|UNABLE_TO_VERIFY|unable to verify/i);
  });
});

// ---------------------------------------------------------------------------------------------------
// (c) poolview view vs a real kube-proxy

describeWithKubeProxy()('poolview view agrees with a real kube-proxy through poolview', () => {
  const ns = uniqueName('ship-view');
  const poolA = uniqueName('ship-pool-a');
  const poolB = uniqueName('ship-pool-b');
  const nodeA = uniqueName('ship-a');
  const nodeB = uniqueName('ship-b');
  let netns: NodeNetns;
  let pv: TestPoolview;
  let kubeProxy: KubeProxy;

  beforeAll(async () => {
    await cluster.createNamespace(ns);
    cleanups.push(() => cluster.delete('v1', 'Namespace', ns));
    netns = await createNodeNetns();
    cleanups.push(() => netns.remove());
    await cluster.createNodePool(poolA, { nodes: [nodeA] });
    await cluster.createNodePool(poolB, { nodes: [nodeB] });
    cleanups.push(() => cluster.delete('apps.openyurt.io/v1beta2', 'NodePool', poolA));
    cleanups.push(() => cluster.delete('apps.openyurt.io/v1beta2', 'NodePool', poolB));
    await cluster.createNode(nodeA, { internalIP: netns.nodeIP, pool: poolA });
    await cluster.createNode(nodeB, { internalIP: '10.250.254.20', pool: poolB });
    cleanups.push(() => cluster.delete('v1', 'Node', nodeA));
    cleanups.push(() => cluster.delete('v1', 'Node', nodeB));

    const ports = [{ name: 'http', port: 80, targetPort: 8080 }];
    const slice = (service: string, endpoints: { ip: string; nodeName: string; ready?: boolean }[], name = `${service}-1`) =>
      cluster.createEndpointSlice(ns, name, { service, ports: [{ name: 'http', port: 8080 }], endpoints });
    const onA = (ip: string) => ({ ip, nodeName: nodeA });
    const onB = (ip: string) => ({ ip, nodeName: nodeB });
    // NodePort listening on the other pool only: not on this node.
    await cluster.createService(ns, 'np-other-pool', { type: 'NodePort', ports, annotations: { [LISTEN]: poolB } });
    await slice('np-other-pool', [onA('10.244.6.1'), onB('10.244.6.2')]);
    // NodePort listening here (and on B disabled explicitly).
    await cluster.createService(ns, 'np-here', { type: 'NodePort', ports, annotations: { [LISTEN]: `-${poolB},${poolA}` } });
    await slice('np-here', [onA('10.244.6.3')]);
    // Topology by pool: only this pool's endpoints, over two slices.
    await cluster.createService(ns, 'topo-pool', { ports, annotations: { [TOPOLOGY]: 'openyurt.io/nodepool' } });
    await slice('topo-pool', [onA('10.244.6.4'), onB('10.244.6.5')]);
    await slice('topo-pool', [onB('10.244.6.6'), onA('10.244.6.7')], 'topo-pool-2');
    // Topology by host with endpoints elsewhere only: kept, but emptied.
    await cluster.createService(ns, 'topo-host', { ports, annotations: { [TOPOLOGY]: 'kubernetes.io/hostname' } });
    await slice('topo-host', [onB('10.244.6.8')]);
    // Unfiltered ClusterIP with endpoints in both pools.
    await cluster.createService(ns, 'plain', { ports });
    await slice('plain', [onA('10.244.6.9'), onB('10.244.6.10')]);
    // Auto-listen: endpoints only in pool B. (poolview starts after all this: it lists slices and
    // Services together, so no order between them matters.)
    await slice('auto-b', [onB('10.244.6.11')]);
    await cluster.createService(ns, 'auto-b', { type: 'NodePort', ports, annotations: { [AUTO_LISTEN]: 'true' } });
    // Auto-listen with a ready endpoint here: listens.
    await slice('auto-a', [onA('10.244.6.12'), onB('10.244.6.13')]);
    await cluster.createService(ns, 'auto-a', { type: 'NodePort', ports, annotations: { [AUTO_LISTEN]: 'true' } });

    pv = await startTestPoolview(cluster, { nodeName: nodeA, bindAddress: netns.hostIP, featureGates: { NodePortAutoListen: true } });
    cleanups.push(() => pv.close());
    kubeProxy = await startKubeProxy({ cluster, nodeName: nodeA, server: pv.httpsUrl, netns, createNode: false });
    cleanups.push(() => kubeProxy.stop());
  });

  it('same Services, same endpoints (for this node, component kube-proxy)', async () => {
    const key = (name: string) => `${ns}/${name}:http`;
    // The state designed above: these Services with these endpoints, and no other (the left-out
    // ones absent), as kube-proxy programs it.
    const designed = {
      'auto-a': ['10.244.6.12', '10.244.6.13'],
      'np-here': ['10.244.6.3'],
      plain: ['10.244.6.10', '10.244.6.9'],
      'topo-host': [],
      'topo-pool': ['10.244.6.4', '10.244.6.7'],
    };
    await kubeProxy.waitFor((r) => isDeepStrictEqual(rulesOf(r, ns), designed), 30_000, 'kube-proxy programs the designed view');
    const rules = await kubeProxy.rules();

    const out = await poolviewView([
      '--node', nodeA, '--component', 'kube-proxy', '-o', 'json',
      '--kubeconfig', cluster.kubeconfig('poolview'), '--feature-gates', 'NodePortAutoListen=true',
    ]);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const report = JSON.parse(out.stdout) as ViewReport;
    expect(report).toMatchObject({ node: nodeA, pool: poolA, component: 'kube-proxy' });
    expect(report.filters.services).toContain('nodeportisolation');
    expect(report.filters.endpointslices).toContain('servicetopology');

    const fromView = viewOf(report, ns);
    const fromRules = rulesOf(rules, ns);
    expect(fromView).toEqual(fromRules);
    // And both are the designed view.
    expect(fromRules).toEqual(designed);
    // The Services left out say why, naming the pool.
    const hidden = report.services.filter((s) => s.namespace === ns && !s.visible);
    expect(hidden.map((s) => s.name).sort()).toEqual(['auto-b', 'np-other-pool']);
    expect(hidden.find((s) => s.name === 'np-other-pool')!.reason).toContain(poolA);
    expect(hidden.find((s) => s.name === 'auto-b')!.reason).toContain(poolB);
    // The NodePorts kube-proxy programs are those of the visible NodePort Services.
    const nodePorts = [...rules.services.values()].filter((s) => s.name.startsWith(`${ns}/`) && s.nodePort).map((s) => s.name.split('/')[1]!.split(':')[0]).sort();
    expect(nodePorts).toEqual(['auto-a', 'np-here']);
  });
});

/** Visible Services of `ns` in the report → sorted endpoint IPs kept for them. */
function viewOf(report: ViewReport, ns: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const s of report.services) if (s.namespace === ns && s.visible) out[s.name] = [];
  for (const slice of report.endpointSlices) {
    if (slice.namespace !== ns || !slice.service || !(slice.service in out)) continue;
    out[slice.service]!.push(...slice.kept);
  }
  for (const k of Object.keys(out)) out[k]!.sort();
  return out;
}

/** Services of `ns` kube-proxy programmed → sorted endpoint IPs (DNAT targets without port). */
function rulesOf(rules: ProxyRules, ns: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const s of rules.services.values()) {
    if (!s.name.startsWith(`${ns}/`)) continue;
    const name = s.name.slice(ns.length + 1).split(':')[0]!;
    out[name] = [...(out[name] ?? []), ...s.endpoints.map((e) => e.replace(/:\d+$/, ''))].sort();
  }
  return out;
}

