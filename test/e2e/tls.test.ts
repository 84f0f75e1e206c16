// --rotate-server-certificates on the real control plane, signed by a real kube-controller-manager
// (CSR signing controller with the cluster CA): poolview creates a kubelet-serving
// CertificateSigningRequest with its own identity and the shipped RBAC, waits while it is pending
// (secure port closed, /readyz says why), serves HTTPS once `kubectl certificate approve` let the
// signer issue it, an in-cluster-style client verifies it with the cluster CA; a restart with the
// same --cert-dir reuses the certificate; a denied request is an error in the log, not a crash.
import { copyFileSync, createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { connect, type PeerCertificate } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { startPoolview, type RunningPoolview } from '../../src/app.js';
import { createLogger } from '../../src/log.js';
import { IDENTITY_USERS, type KubeObject } from '../support/cluster.js';
import { startControllerManager, type ControllerManager } from '../support/controller-manager.js';
import { poll } from '../support/processes.js';
import { sharedCluster, uniqueName } from '../support/shared-cluster.js';

const COMPONENT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'config', 'rotate-server-certificates');
const cluster = sharedCluster();
const scratch = mkdtempSync(join(tmpdir(), 'poolview-tls-'));
const cleanups: (() => Promise<unknown>)[] = [];
let kcm: ControllerManager;

type Csr = KubeObject & {
  spec: { signerName: string; usages: string[]; username: string; request: string };
  status?: { certificate?: string; conditions?: { type: string; status: string; reason?: string; message?: string }[] };
};

beforeAll(async () => {
  kcm = await startControllerManager(cluster);
  cleanups.push(() => kcm.stop());
  // The shipped CSR permissions (config/rotate-server-certificates/rbac.yaml), bound to the e2e
  // identity "poolview" (the harness gives it the read-only role already).
  const suffix = uniqueName('tls');
  const role = parseAllDocuments(readFileSync(join(COMPONENT, 'rbac.yaml'), 'utf8')).map((d) => d.toJS() as KubeObject & Record<string, any>).find((o) => o.kind === 'ClusterRole')!;
  role.metadata!.name = `${role.metadata!.name}-${suffix}`;
  await cluster.apply(role);
  cleanups.push(() => cluster.delete('rbac.authorization.k8s.io/v1', 'ClusterRole', role.metadata!.name!));
  const binding = {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name: role.metadata!.name },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata!.name },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: IDENTITY_USERS.poolview.user }],
  };
  await cluster.apply(binding);
  cleanups.push(() => cluster.delete('rbac.authorization.k8s.io/v1', 'ClusterRoleBinding', binding.metadata.name));
  await poll('poolview may create CSRs', async () => (await cluster.kubectl(['auth', 'can-i', 'create', 'certificatesigningrequests'], { identity: 'poolview' })).stdout.trim() === 'yes', 15_000);
});

afterAll(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => {});
  rmSync(scratch, { recursive: true, force: true });
  await cluster.close();
});

interface Started {
  pv: RunningPoolview;
  logFile: string;
  log: () => Array<Record<string, any>>;
  close: () => Promise<void>;
}

async function startCsrPoolview(node: string, certDir: string, csrRetryDelayMs?: (n: number) => number): Promise<Started> {
  const logFile = join(cluster.workDir, `poolview-${node}-${Date.now()}.log`);
  const stream = createWriteStream(logFile, { flags: 'a' });
  const pv = await startPoolview(
    { nodeName: node, kubeconfig: cluster.kubeconfig('poolview'), port: 0, healthPort: 0, securePort: 0, rotateServerCertificates: true, certDir },
    { logger: createLogger('info', stream), probeIntervalMs: 1_000, csrRetryDelayMs },
  );
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await pv.close();
    await new Promise<void>((r) => stream.end(r));
  };
  cleanups.push(close);
  const log = () =>
    readFileSync(logFile, 'utf8')
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as Record<string, any>);
  return { pv, logFile, log, close };
}

async function csrsOf(node: string): Promise<Csr[]> {
  const list = await cluster.list<Csr>('certificates.k8s.io/v1', 'CertificateSigningRequest', { labelSelector: 'app.kubernetes.io/name=poolview' });
  return list.items.filter((c) => c.metadata!.name!.startsWith(`poolview-${node}-`));
}

const conditionTypes = (csr: Csr) => (csr.status?.conditions ?? []).map((c) => c.type).sort();

/** The certificate a TLS handshake with poolview's secure port gets, verified against the cluster CA. */
function servedCertificate(url: string): Promise<PeerCertificate> {
  const { hostname, port } = new URL(url);
  return new Promise((resolvePeer, reject) => {
    const socket = connect({ host: hostname, port: Number(port), ca: readFileSync(cluster.caFile), servername: 'localhost' }, () => {
      resolvePeer(socket.getPeerCertificate());
      socket.end();
    });
    socket.on('error', reject);
  });
}

describe('serving certificate from the certificates API, signed by kube-controller-manager', () => {
  const node = uniqueName('tls-node');
  const ns = uniqueName('tls-ic');
  const certDir = join(scratch, 'pki');
  let token: string;

  beforeAll(async () => {
    await cluster.createNode(node, { internalIP: '10.250.253.7' });
    cleanups.push(() => cluster.delete('v1', 'Node', node));
    // A pod's identity for the in-cluster client: a ServiceAccount that may list Services in ns.
    await cluster.createNamespace(ns);
    cleanups.push(() => cluster.delete('v1', 'Namespace', ns));
    await cluster.createService(ns, 'web', { ports: [{ name: 'http', port: 80, targetPort: 8080 }] });
    await cluster.apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'reader', namespace: ns } });
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
    const { body } = await cluster.request<{ status: { token: string } }>('POST', `/api/v1/namespaces/${ns}/serviceaccounts/reader/token`, {
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 } },
    });
    token = body.status.token;
  });

  /** KubeConfig.loadFromCluster() from pod files, with KUBERNETES_SERVICE_HOST/PORT at poolview's secure port. */
  function inClusterApi(secureUrl: string): CoreV1Api {
    const prefix = mkdtempSync(join(scratch, 'pod-'));
    const sa = join(prefix, 'var/run/secrets/kubernetes.io/serviceaccount');
    mkdirSync(sa, { recursive: true });
    writeFileSync(join(sa, 'token'), token);
    copyFileSync(cluster.caFile, join(sa, 'ca.crt'));
    writeFileSync(join(sa, 'namespace'), ns);
    const url = new URL(secureUrl);
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    process.env.KUBERNETES_SERVICE_HOST = url.hostname;
    process.env.KUBERNETES_SERVICE_PORT = url.port;
    try {
      const kc = new KubeConfig();
      kc.loadFromCluster(prefix);
      expect(kc.getCurrentCluster()!.skipTLSVerify).toBe(false);
      return kc.makeApiClient(CoreV1Api);
    } finally {
      for (const [k, v] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  }

  let serial: string;

  it('waits for approval, then serves HTTPS with the issued certificate; an in-cluster client verifies it', async () => {
    const started = await startCsrPoolview(node, certDir);
    const { pv } = started;
    // Plain and health serve at once; the secure port waits for the certificate.
    expect(pv.secureUrl).toBeUndefined();
    expect((await fetch(`${pv.url}/version`)).status).toBe(200);
    const csr = await poll('the CertificateSigningRequest', async () => (await csrsOf(node))[0], 20_000);
    const name = csr.metadata!.name!;
    expect(name).toMatch(new RegExp(`^poolview-${node}-[0-9a-f]{6}$`));
    expect(csr.spec.signerName).toBe('kubernetes.io/kubelet-serving');
    expect(csr.spec.username).toBe(IDENTITY_USERS.poolview.user); // poolview's own credentials
    expect([...csr.spec.usages].sort()).toEqual(['digital signature', 'key encipherment', 'server auth']);
    expect(conditionTypes(csr)).toEqual([]);
    await poll('the waiting line in the log', () => started.log().some((l) => l.msg === `waiting for approval: kubectl certificate approve ${name}`), 10_000);
    const readyz = await poll('/readyz names the pending CSR', async () => {
      const text = await (await fetch(`${pv.healthUrl}/readyz?verbose`)).text();
      return text.includes('[-]serving-certificate') ? text : undefined;
    }, 20_000);
    expect(readyz).toContain(`[-]serving-certificate failed: waiting for approval of CertificateSigningRequest ${name}`);
    // Still pending a while later: nothing signs an unapproved request.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(pv.secureUrl).toBeUndefined();
    expect(conditionTypes((await csrsOf(node))[0]!)).toEqual([]);

    const t0 = Date.now();
    const approve = await cluster.kubectl(['certificate', 'approve', name]);
    expect(approve.code, approve.stderr).toBe(0);
    const t1 = Date.now();
    const secureUrl = await pv.secureReady!;
    const t2 = Date.now();
    console.log(`[tls] kubectl certificate approve started → poolview HTTPS serving the issued certificate: ${t2 - t0} ms (${t2 - t1} ms after kubectl exited)`);
    expect(pv.secureUrl).toBe(secureUrl);

    // The signer issued it: Approved, certificate set, and that is what the secure port serves.
    const issued = (await csrsOf(node))[0]!;
    expect(conditionTypes(issued)).toEqual(['Approved']);
    expect(issued.status?.certificate).toBeTruthy();
    const peer = await servedCertificate(secureUrl);
    expect(peer.subject).toMatchObject({ CN: `system:node:${node}`, O: 'system:nodes' });
    expect(peer.issuer.CN).toBe('poolview-e2e-ca');
    for (const san of [`DNS:${node}`, 'DNS:localhost', 'IP Address:127.0.0.1', 'IP Address:10.250.253.7']) expect(peer.subjectaltname).toContain(san);
    const issuedPem = Buffer.from(issued.status!.certificate!, 'base64').toString();
    const { X509Certificate } = await import('node:crypto');
    expect(new X509Certificate(issuedPem).serialNumber).toBe(peer.serialNumber);
    serial = peer.serialNumber;

    // An in-cluster-style client: ca.crt + token from pod files, certificate verified.
    const services = await inClusterApi(secureUrl).listNamespacedService({ namespace: ns });
    expect(services.items.map((s) => s.metadata?.name)).toEqual(['web']);
    expect(await (await fetch(`${pv.healthUrl}/readyz?verbose`)).text()).toContain('[+]serving-certificate ok');
    const metrics = await (await fetch(`${pv.healthUrl}/metrics`)).text();
    const expiry = Number(/^poolview_serving_certificate_expiry_seconds (\S+)$/m.exec(metrics)![1]);
    // The signer's default of one year, cut to the life left of the e2e cluster CA (30 days).
    expect(expiry).toBeGreaterThan(29 * 86400);
    expect(readFileSync(started.logFile, 'utf8')).not.toMatch(/PRIVATE KEY|Bearer /);
    await started.close();
  });

  it('a restart with the same --cert-dir serves the kept certificate and creates no CSR', async () => {
    expect(serial).toBeDefined();
    const before = (await csrsOf(node)).map((c) => c.metadata!.name).sort();
    const t0 = Date.now();
    const { pv, log, close } = await startCsrPoolview(node, certDir);
    const secureUrl = await pv.secureReady!;
    console.log(`[tls] restart with a kept certificate → HTTPS serving: ${Date.now() - t0} ms`);
    expect((await servedCertificate(secureUrl)).serialNumber).toBe(serial);
    const services = await inClusterApi(secureUrl).listNamespacedService({ namespace: ns });
    expect(services.items.map((s) => s.metadata?.name)).toEqual(['web']);
    // Settled on the kept certificate: the next request is its renewal, months away.
    await poll('the renewal to be scheduled', () => log().some((l) => l.msg === 'serving certificate renewal scheduled'), 10_000);
    expect((await csrsOf(node)).map((c) => c.metadata!.name).sort()).toEqual(before);
    await close();
  });

  it('a denied CSR is a clear error, /readyz says why, poolview keeps serving and asks again later', async () => {
    const denied = uniqueName('tls-denied');
    await cluster.createNode(denied, { internalIP: '10.250.253.8' });
    cleanups.push(() => cluster.delete('v1', 'Node', denied));
    const started = await startCsrPoolview(denied, join(scratch, 'pki-denied'), () => 1_000);
    const csr = await poll('the CertificateSigningRequest', async () => (await csrsOf(denied))[0], 20_000);
    const name = csr.metadata!.name!;
    const deny = await cluster.kubectl(['certificate', 'deny', name]);
    expect(deny.code, deny.stderr).toBe(0);
    const error = await poll('the error line', () => started.log().find((l) => l.level === 50), 20_000);
    expect(error.msg).toMatch(new RegExp(`^CertificateSigningRequest ${name} was denied: .*; requesting again later$`));
    const readyz = await (await fetch(`${started.pv.healthUrl}/readyz?verbose`)).text();
    expect(readyz).toContain(`[-]serving-certificate failed: CertificateSigningRequest ${name} was denied`);
    // No crash: the plain port still proxies; a new request follows after the retry delay.
    expect((await fetch(`${started.pv.url}/version`)).status).toBe(200);
    expect(started.pv.secureUrl).toBeUndefined();
    await poll('a second CertificateSigningRequest', async () => (await csrsOf(denied)).length === 2, 20_000);
    await started.close();
  });
});
