// A real control plane for e2e tests: etcd + kube-apiserver on loopback, free ports, generated
// certificates, static tokens for three identities, RBAC, and the OpenYurt NodePool CRD.
//
// One process owns the control plane (startCluster, normally vitest's global setup) and hands its
// ClusterInfo to test files, which rebuild a handle with `new Cluster(info)` (see shared-cluster.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import {
  freePort,
  onExit,
  pidAlive,
  poll,
  PollAbort,
  run,
  startProcess,
  tempDirCleanup,
  type ManagedProcess,
  type RunResult,
} from './processes.js';

export type Identity = 'admin' | 'kubeProxy' | 'poolview';

/** The users behind the static tokens. */
export const IDENTITY_USERS: Record<Identity, { user: string; groups: string[] }> = {
  admin: { user: 'poolview-e2e-admin', groups: ['system:masters'] },
  kubeProxy: { user: 'system:kube-proxy', groups: [] },
  poolview: { user: 'poolview', groups: ['poolview:proxies'] },
};

/** Everything needed to use a running control plane; plain data, so it crosses process boundaries. */
export interface ClusterInfo {
  /** https://127.0.0.1:PORT */
  server: string;
  /** PEM file of the cluster CA (signs the apiserver's serving certificate). */
  caFile: string;
  tokens: Record<Identity, string>;
  /** http://127.0.0.1:PORT */
  etcdServer: string;
  /** Directory holding kube-apiserver, kube-controller-manager, kube-proxy, kubectl, etcd. */
  binDir: string;
  /** The control plane's temporary directory (logs, certificates, generated kubeconfigs). */
  workDir: string;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    resourceVersion?: string;
    uid?: string;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

export interface KubeList<T = KubeObject> {
  apiVersion: string;
  kind: string;
  metadata: { resourceVersion: string; continue?: string };
  items: T[];
}

export interface KubectlOptions {
  identity?: Identity;
  /** Talk to this server instead of the apiserver (e.g. poolview's URL). */
  server?: string;
  input?: string;
  timeoutMs?: number;
}

export interface RequestOptions {
  identity?: Identity;
  body?: unknown;
  contentType?: string;
  query?: Record<string, string | undefined>;
  /** Statuses returned instead of thrown (2xx are always returned). */
  allow?: number[];
}

export interface ServicePortSpec {
  name: string;
  port: number;
  targetPort?: number;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  nodePort?: number;
}

export interface EndpointSpec {
  ip: string;
  nodeName?: string;
  zone?: string;
  ready?: boolean;
}

const NODEPOOL_CRD = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'nodepools.apps.openyurt.io' },
  spec: {
    group: 'apps.openyurt.io',
    scope: 'Cluster',
    names: { plural: 'nodepools', singular: 'nodepool', kind: 'NodePool', listKind: 'NodePoolList', shortNames: ['np'] },
    conversion: { strategy: 'None' },
    versions: ['v1beta2', 'v1beta1'].map((name) => ({
      name,
      served: true,
      storage: name === 'v1beta2',
      subresources: { status: {} },
      schema: {
        openAPIV3Schema: {
          type: 'object',
          properties: {
            spec: {
              type: 'object',
              'x-kubernetes-preserve-unknown-fields': true,
              properties: {
                type: { type: 'string' },
                labels: { type: 'object', additionalProperties: { type: 'string' } },
                annotations: { type: 'object', additionalProperties: { type: 'string' } },
              },
            },
            status: {
              type: 'object',
              'x-kubernetes-preserve-unknown-fields': true,
              properties: { nodes: { type: 'array', items: { type: 'string' } } },
            },
          },
        },
      },
    })),
  },
};

const POOLVIEW_RBAC = [
  {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: { name: 'poolview' },
    rules: [
      { apiGroups: [''], resources: ['services', 'endpoints', 'nodes', 'configmaps', 'namespaces'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['apps.openyurt.io'], resources: ['nodepools'], verbs: ['get', 'list', 'watch'] },
      {
        nonResourceURLs: ['/readyz', '/readyz/*', '/livez', '/livez/*', '/healthz', '/healthz/*', '/version', '/api', '/api/*', '/apis', '/apis/*'],
        verbs: ['get'],
      },
    ],
  },
  {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name: 'poolview' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'poolview' },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: IDENTITY_USERS.poolview.user }],
  },
  {
    // The bootstrap policy already binds system:node-proxier to system:kube-proxy; say it explicitly.
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name: 'poolview-e2e:kube-proxy' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:node-proxier' },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: IDENTITY_USERS.kubeProxy.user }],
  },
];

const FIELD_MANAGER = 'poolview-e2e';

/** A handle on a running control plane. Only the handle returned by startCluster can stop it. */
export class Cluster {
  readonly server: string;
  readonly caFile: string;
  readonly tokens: Record<Identity, string>;
  readonly binDir: string;
  readonly workDir: string;
  private readonly agent: Agent;
  private readonly resources = new Map<string, { name: string; namespaced: boolean }>();
  private readonly children = new Set<ChildProcess>();

  constructor(readonly info: ClusterInfo) {
    this.server = info.server;
    this.caFile = info.caFile;
    this.tokens = info.tokens;
    this.binDir = info.binDir;
    this.workDir = info.workDir;
    this.agent = new Agent({ connect: { ca: readFileSync(info.caFile) }, keepAliveTimeout: 4_000 });
  }

  /** Stops kube-apiserver and starts it again on the same port and etcd; only for a cluster this process started. */
  restartApiserver(): Promise<void> {
    return Promise.reject(new Error('only a cluster started by this process (startCluster) can restart its apiserver'));
  }

  /** Path of a kubeconfig for `identity`, talking to `server` (default: the apiserver). */
  kubeconfig(identity: Identity = 'admin', server: string = this.server): string {
    const url = new URL(server);
    const cluster: Record<string, string> = { server: server.replace(/\/$/, '') };
    if (url.protocol === 'https:') {
      cluster['certificate-authority'] = this.caFile;
      // The serving certificate names 127.0.0.1 and localhost; a forwarded address does not match.
      if (!['127.0.0.1', 'localhost'].includes(url.hostname)) cluster['tls-server-name'] = 'localhost';
    }
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'e2e', cluster }],
      users: [{ name: identity, user: { token: this.tokens[identity] } }],
      contexts: [{ name: 'e2e', context: { cluster: 'e2e', user: identity } }],
      'current-context': 'e2e',
    };
    const dir = join(this.workDir, 'kubeconfigs');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${identity}-${createHash('sha256').update(server).digest('hex').slice(0, 10)}.json`);
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(config, null, 2), { mode: 0o600 });
    renameSync(tmp, file);
    return file;
  }

  private kubectlArgs(args: string[], opts: KubectlOptions): string[] {
    return ['--kubeconfig', this.kubeconfig(opts.identity ?? 'admin', opts.server), '--cache-dir', join(this.workDir, 'kubectl-cache'), ...args];
  }

  private kubectlEnv(): NodeJS.ProcessEnv {
    const env = { ...process.env };
    delete env.KUBECONFIG;
    return env;
  }

  /** Runs kubectl to completion. */
  kubectl(args: string[], opts: KubectlOptions = {}): Promise<RunResult> {
    return run(join(this.binDir, 'kubectl'), this.kubectlArgs(args, opts), {
      input: opts.input,
      env: this.kubectlEnv(),
      timeoutMs: opts.timeoutMs,
    });
  }

  /** Runs kubectl, throws unless it succeeds, returns stdout parsed as JSON (add `-o json` yourself). */
  async kubectlJson<T = KubeList>(args: string[], opts: KubectlOptions = {}): Promise<T> {
    const r = await this.kubectl(args, opts);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
    return JSON.parse(r.stdout) as T;
  }

  /** Starts a long-running kubectl (e.g. `get --watch`); kill it when done (it is killed at exit anyway). */
  spawnKubectl(args: string[], opts: KubectlOptions = {}): ChildProcess {
    const child = spawn(join(this.binDir, 'kubectl'), this.kubectlArgs(args, opts), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: this.kubectlEnv(),
    });
    this.children.add(child);
    const unregister = onExit(() => child.kill('SIGKILL'));
    child.on('exit', () => {
      unregister();
      this.children.delete(child);
    });
    return child;
  }

  /** An HTTP request to the apiserver. Throws on a status outside 2xx and `allow`. */
  async request<T = any>(method: string, path: string, opts: RequestOptions = {}): Promise<{ status: number; body: T }> {
    const url = new URL(path, this.server);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.tokens[opts.identity ?? 'admin']}`,
      accept: 'application/json',
    };
    let body: string | undefined;
    if (opts.body !== undefined) {
      body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
      headers['content-type'] = opts.contentType ?? 'application/json';
    }
    const res = await request(url, { method: method as 'GET', headers, body, dispatcher: this.agent });
    const text = await res.body.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON (e.g. /readyz)
    }
    if ((res.statusCode < 200 || res.statusCode > 299) && !opts.allow?.includes(res.statusCode)) {
      const message = (parsed as { message?: string } | undefined)?.message ?? text.slice(0, 300);
      throw Object.assign(new Error(`${method} ${url.pathname}${url.search}: ${res.statusCode} ${message}`), { status: res.statusCode, body: parsed });
    }
    return { status: res.statusCode, body: parsed as T };
  }

  /** Resource name and scope of a kind, from discovery (retries briefly for new CRDs). */
  async resourceFor(apiVersion: string, kind: string): Promise<{ name: string; namespaced: boolean }> {
    const key = `${apiVersion}/${kind}`;
    const cached = this.resources.get(key);
    if (cached) return cached;
    const path = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    return poll(`discovery of ${key}`, async () => {
      const { body } = await this.request<{ resources: { name: string; kind: string; namespaced: boolean }[] }>('GET', path);
      for (const r of body.resources) {
        if (!r.name.includes('/')) this.resources.set(`${apiVersion}/${r.kind}`, { name: r.name, namespaced: r.namespaced });
      }
      return this.resources.get(key);
    }, 15_000);
  }

  /** URL path of a collection (name undefined) or an object. */
  async pathFor(apiVersion: string, kind: string, name?: string, namespace?: string): Promise<string> {
    const r = await this.resourceFor(apiVersion, kind);
    const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    const ns = r.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
    if (r.namespaced && name !== undefined && !namespace) throw new Error(`${kind} ${name}: namespace required`);
    return `${base}${ns}/${r.name}${name === undefined ? '' : `/${encodeURIComponent(name)}`}`;
  }

  /** Server-side apply (create or update) of one or more objects; returns what the server stored. */
  async apply<T extends KubeObject>(obj: T, identity?: Identity): Promise<T>;
  async apply<T extends KubeObject>(objs: T[], identity?: Identity): Promise<T[]>;
  async apply<T extends KubeObject>(objOrList: T | T[], identity: Identity = 'admin'): Promise<T | T[]> {
    if (Array.isArray(objOrList)) {
      const out: T[] = [];
      for (const o of objOrList) out.push(await this.apply(o, identity));
      return out;
    }
    const obj = objOrList;
    if (!obj.apiVersion || !obj.kind || !obj.metadata?.name) throw new Error('apply: apiVersion, kind and metadata.name are required');
    const path = await this.pathFor(obj.apiVersion, obj.kind, obj.metadata.name, obj.metadata.namespace);
    const { body } = await this.request<T>('PATCH', path, {
      identity,
      body: obj,
      contentType: 'application/apply-patch+yaml',
      query: { fieldManager: FIELD_MANAGER, force: 'true' },
    });
    return body;
  }

  /** JSON merge patch of an object's status subresource. */
  async patchStatus<T extends KubeObject = KubeObject>(apiVersion: string, kind: string, name: string, namespace: string | undefined, status: unknown): Promise<T> {
    const path = `${await this.pathFor(apiVersion, kind, name, namespace)}/status`;
    const { body } = await this.request<T>('PATCH', path, { body: { status }, contentType: 'application/merge-patch+json' });
    return body;
  }

  /** JSON merge patch of an object. */
  async patch<T extends KubeObject = KubeObject>(apiVersion: string, kind: string, name: string, namespace: string | undefined, patch: unknown): Promise<T> {
    const path = await this.pathFor(apiVersion, kind, name, namespace);
    const { body } = await this.request<T>('PATCH', path, { body: patch, contentType: 'application/merge-patch+json' });
    return body;
  }

  /** The object, or undefined when it does not exist. */
  async get<T extends KubeObject = KubeObject>(apiVersion: string, kind: string, name: string, namespace?: string): Promise<T | undefined> {
    const path = await this.pathFor(apiVersion, kind, name, namespace);
    const { status, body } = await this.request<T>('GET', path, { allow: [404] });
    return status === 404 ? undefined : body;
  }

  async list<T extends KubeObject = KubeObject>(
    apiVersion: string,
    kind: string,
    opts: { namespace?: string; labelSelector?: string; fieldSelector?: string } = {},
  ): Promise<KubeList<T>> {
    const path = await this.pathFor(apiVersion, kind, undefined, opts.namespace);
    const { body } = await this.request<KubeList<T>>('GET', path, {
      query: { labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector },
    });
    return body;
  }

  /** Deletes an object; no error when it is already gone. */
  async delete(apiVersion: string, kind: string, name: string, namespace?: string): Promise<void> {
    const path = await this.pathFor(apiVersion, kind, name, namespace);
    await this.request('DELETE', path, { allow: [404] });
  }

  // ---- builders for the objects the tests need (no controller-manager runs here) ----

  createNamespace(name: string, labels: Record<string, string> = {}): Promise<KubeObject> {
    return this.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
  }

  /** A Node with status.addresses (InternalIP, Hostname); `pool` sets label apps.openyurt.io/nodepool. */
  async createNode(name: string, opts: { internalIP: string; pool?: string; labels?: Record<string, string> }): Promise<KubeObject> {
    const labels: Record<string, string> = { 'kubernetes.io/hostname': name, ...opts.labels };
    if (opts.pool) labels['apps.openyurt.io/nodepool'] = opts.pool;
    await this.apply({ apiVersion: 'v1', kind: 'Node', metadata: { name, labels } });
    return this.patchStatus('v1', 'Node', name, undefined, {
      addresses: [
        { type: 'InternalIP', address: opts.internalIP },
        { type: 'Hostname', address: name },
      ],
    });
  }

  /** A NodePool (apps.openyurt.io/v1beta2) with status.nodes set through the status subresource. */
  async createNodePool(name: string, opts: { type?: 'Edge' | 'Cloud'; nodes?: string[]; labels?: Record<string, string> } = {}): Promise<KubeObject> {
    await this.apply({
      apiVersion: 'apps.openyurt.io/v1beta2',
      kind: 'NodePool',
      metadata: { name, labels: opts.labels },
      spec: { type: opts.type ?? 'Edge' },
    });
    return this.setNodePoolNodes(name, opts.nodes ?? []);
  }

  setNodePoolNodes(name: string, nodes: string[]): Promise<KubeObject> {
    return this.patchStatus('apps.openyurt.io/v1beta2', 'NodePool', name, undefined, { nodes });
  }

  createService(
    namespace: string,
    name: string,
    opts: {
      type?: 'ClusterIP' | 'NodePort' | 'LoadBalancer';
      ports: ServicePortSpec[];
      annotations?: Record<string, string>;
      labels?: Record<string, string>;
      clusterIP?: string;
    },
  ): Promise<KubeObject> {
    return this.apply({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace, annotations: opts.annotations, labels: opts.labels },
      spec: {
        type: opts.type ?? 'ClusterIP',
        clusterIP: opts.clusterIP,
        ports: opts.ports.map((p) => ({
          name: p.name,
          port: p.port,
          targetPort: p.targetPort ?? p.port,
          protocol: p.protocol ?? 'TCP',
          nodePort: p.nodePort,
        })),
      },
    });
  }

  /** An EndpointSlice of `service` (label kubernetes.io/service-name); ports default to the endpoints' targets. */
  createEndpointSlice(
    namespace: string,
    name: string,
    opts: {
      service: string;
      ports: { name: string; port: number; protocol?: 'TCP' | 'UDP' | 'SCTP' }[];
      endpoints: EndpointSpec[];
      labels?: Record<string, string>;
      annotations?: Record<string, string>;
    },
  ): Promise<KubeObject> {
    return this.apply({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name,
        namespace,
        labels: { 'kubernetes.io/service-name': opts.service, 'endpointslice.kubernetes.io/managed-by': FIELD_MANAGER, ...opts.labels },
        annotations: opts.annotations,
      },
      addressType: 'IPv4',
      ports: opts.ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol ?? 'TCP' })),
      endpoints: opts.endpoints.map((e) => ({
        addresses: [e.ip],
        nodeName: e.nodeName,
        zone: e.zone,
        conditions: { ready: e.ready ?? true, serving: e.ready ?? true, terminating: false },
      })),
    });
  }

  /**
   * A serving certificate signed by the cluster CA (so clients with the cluster's kubeconfig trust
   * it) for 127.0.0.1, localhost and `ips`; e.g. for poolview's secure port.
   */
  async issueServingCert(name: string, ips: string[] = []): Promise<{ certFile: string; keyFile: string }> {
    const pki = join(this.workDir, 'pki');
    const dir = join(this.workDir, 'certs');
    mkdirSync(dir, { recursive: true });
    const base = join(dir, `${name}-${randomBytes(4).toString('hex')}`);
    const sans = ['IP:127.0.0.1', 'DNS:localhost', ...ips.map((ip) => `IP:${ip}`)].join(',');
    await issueCert(join(pki, 'ca.crt'), join(pki, 'ca.key'), base, `/CN=${name}`, sans);
    return { certFile: `${base}.crt`, keyFile: `${base}.key` };
  }

  /** Releases this handle's connections and kubectl children (the control plane keeps running). */
  async close(): Promise<void> {
    for (const child of this.children) child.kill('SIGKILL');
    await this.agent.close();
  }

  /** Stops the control plane; only the handle from startCluster owns it, elsewhere this is close(). */
  async stop(): Promise<void> {
    await this.close();
  }
}

class OwnedCluster extends Cluster {
  constructor(
    info: ClusterInfo,
    private readonly processes: ManagedProcess[],
    private readonly removeWorkDir: () => void,
    private readonly restart: () => Promise<void>,
  ) {
    super(info);
  }

  override restartApiserver(): Promise<void> {
    return this.restart();
  }

  override async stop(): Promise<void> {
    await this.close();
    for (const p of [...this.processes].reverse()) await p.stop();
    this.removeWorkDir();
  }
}

const here = dirname(fileURLToPath(import.meta.url));
export const BUILD_SCRIPT = resolve(here, '../cluster/build.sh');

/**
 * Builds (or finds cached) kube-apiserver, kube-controller-manager, kube-proxy, kubectl and etcd with
 * test/cluster/build.sh; returns their directory. Progress lines of the script go to `onProgress`.
 */
export async function buildBinaries(onProgress: (line: string) => void = (l) => console.log(l)): Promise<string> {
  if (process.env.POOLVIEW_K8S_BIN) return process.env.POOLVIEW_K8S_BIN;
  return runBuildScript(BUILD_SCRIPT, onProgress);
}

/** Runs a build script of test/cluster/ (stderr: progress lines); returns the directory it prints last. */
export async function runBuildScript(script: string, onProgress: (line: string) => void): Promise<string> {
  const child = spawn('bash', [script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  let partial = '';
  child.stderr.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (line.trim()) onProgress(line);
  });
  const code = await new Promise<number | null>((res) => child.on('exit', res));
  if (partial.trim()) onProgress(partial);
  if (code !== 0) throw new Error(`${script} failed (exit ${code})`);
  const dir = stdout.trim().split('\n').pop();
  if (!dir) throw new Error(`${script} printed no directory`);
  return dir;
}

/** openssl invocation that throws with its stderr on failure. */
async function openssl(args: string[]): Promise<void> {
  const r = await run('openssl', args);
  if (r.code !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr.trim()}`);
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** Writes `<base>.key` and `<base>.crt`: a serving certificate for `sans` signed by the CA. */
async function issueCert(caCrt: string, caKey: string, base: string, subject: string, sans: string): Promise<void> {
  await openssl(['req', ...EC_KEY, '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', subject]);
  writeFileSync(
    `${base}.ext`,
    ['basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment', 'extendedKeyUsage=serverAuth', `subjectAltName=${sans}`, ''].join('\n'),
  );
  await openssl([
    'x509', '-req', '-in', `${base}.csr`, '-CA', caCrt, '-CAkey', caKey,
    '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '30', '-extfile', `${base}.ext`, '-out', `${base}.crt`,
  ]);
}

/** Cluster CA, apiserver serving certificate (127.0.0.1, localhost, the kubernetes Service), SA key. */
async function generatePki(dir: string): Promise<{ ca: string; cert: string; key: string; saKey: string; saPub: string }> {
  mkdirSync(dir, { recursive: true });
  const f = (name: string): string => join(dir, name);
  await openssl([
    'req', '-x509', ...EC_KEY, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '30', '-subj', '/CN=poolview-e2e-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
  ]);
  await issueCert(
    f('ca.crt'), f('ca.key'), f('apiserver'), '/CN=kube-apiserver',
    'IP:127.0.0.1,IP:::1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local',
  );
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f('sa.key')]);
  await openssl(['pkey', '-in', f('sa.key'), '-pubout', '-out', f('sa.pub')]);
  return { ca: f('ca.crt'), cert: f('apiserver.crt'), key: f('apiserver.key'), saKey: f('sa.key'), saPub: f('sa.pub') };
}

/** Removes work directories left behind by harness processes that died without cleaning up. */
function removeStaleWorkDirs(): void {
  for (const name of readdirSync(tmpdir())) {
    const m = /^poolview-e2e-(\d+)-/.exec(name);
    if (m && !pidAlive(Number(m[1]))) rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
}

export interface StartClusterOptions {
  /** Directory with the binaries; default: buildBinaries(). */
  binDir?: string;
  /** Extra kube-apiserver flags, e.g. ['--feature-gates=WatchList=false']. */
  apiserverArgs?: string[];
  log?: (line: string) => void;
}

/** Starts etcd and kube-apiserver, sets up RBAC and the NodePool CRD; resolves once all is ready. */
export async function startCluster(opts: StartClusterOptions = {}): Promise<Cluster> {
  const log = opts.log ?? (() => {});
  const binDir = opts.binDir ?? (await buildBinaries(log));
  removeStaleWorkDirs();
  const workDir = mkdtempSync(join(tmpdir(), `poolview-e2e-${process.pid}-`));
  const removeWorkDir = tempDirCleanup(workDir);
  const processes: ManagedProcess[] = [];
  const fail = async (err: unknown): Promise<never> => {
    for (const p of processes.reverse()) await p.stop(1000);
    removeWorkDir();
    throw err;
  };
  try {
    const pki = await generatePki(join(workDir, 'pki'));
    const tokens = {
      admin: randomBytes(16).toString('hex'),
      kubeProxy: randomBytes(16).toString('hex'),
      poolview: randomBytes(16).toString('hex'),
    } satisfies Record<Identity, string>;
    const tokenFile = join(workDir, 'tokens.csv');
    writeFileSync(
      tokenFile,
      (Object.keys(tokens) as Identity[])
        .map((id) => {
          const { user, groups } = IDENTITY_USERS[id];
          return `${tokens[id]},${user},${user},"${groups.join(',')}"`;
        })
        .join('\n') + '\n',
      { mode: 0o600 },
    );

    const [etcdClient, etcdPeer, securePort] = [await freePort(), await freePort(), await freePort()];
    const etcdServer = `http://127.0.0.1:${etcdClient}`;
    const etcd = startProcess(
      'etcd',
      [
        join(binDir, 'etcd'),
        '--name=e2e',
        `--data-dir=${join(workDir, 'etcd')}`,
        `--listen-client-urls=${etcdServer}`,
        `--advertise-client-urls=${etcdServer}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-cluster=e2e=http://127.0.0.1:${etcdPeer}`,
        '--unsafe-no-fsync', // tests do not need durability; fsyncs are slow on a shared disk
        '--log-level=warn',
      ],
      { logFile: join(workDir, 'etcd.log') },
    );
    processes.push(etcd);
    await poll('etcd /health', async () => {
      if (!etcd.running()) throw new PollAbort(`etcd exited:\n${etcd.logTail()}`);
      const res = await fetch(`${etcdServer}/health`);
      return res.ok && ((await res.json()) as { health?: string }).health === 'true';
    }, 30_000, 100).catch((err: Error) => {
      throw new Error(err instanceof PollAbort ? err.message : `${err.message}\n--- etcd.log ---\n${etcd.logTail()}`);
    });
    log(`>> etcd up at ${etcdServer}`);

    const server = `https://127.0.0.1:${securePort}`;
    const apiserverArgv = [
      join(binDir, 'kube-apiserver'),
      `--etcd-servers=${etcdServer}`,
      `--secure-port=${securePort}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--cert-dir=${join(workDir, 'apiserver-certs')}`,
      `--tls-cert-file=${pki.cert}`,
      `--tls-private-key-file=${pki.key}`,
      `--client-ca-file=${pki.ca}`,
      `--token-auth-file=${tokenFile}`,
      '--authorization-mode=Node,RBAC',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-signing-key-file=${pki.saKey}`,
      `--service-account-key-file=${pki.saPub}`,
      '--service-cluster-ip-range=10.96.0.0/16',
      '--service-node-port-range=30000-32767',
      '--profiling=false',
      ...(opts.apiserverArgs ?? []),
    ];
    const info: ClusterInfo = { server, caFile: pki.ca, tokens, etcdServer, binDir, workDir };
    /** Starts kube-apiserver (again, for a restart: same port, same etcd) and waits for /readyz. */
    const startApiserver = async (): Promise<ManagedProcess> => {
      const apiserver = startProcess('kube-apiserver', apiserverArgv, { logFile: join(workDir, 'kube-apiserver.log') });
      processes.push(apiserver);
      await poll('kube-apiserver /readyz', async () => {
        if (!apiserver.running()) throw new PollAbort(`kube-apiserver exited:\n${apiserver.logTail()}`);
        const { status } = await cluster.request('GET', '/readyz', { allow: [500, 503, 403, 401] }).catch(() => ({ status: 0 }));
        return status === 200;
      }, 90_000, 250).catch((err: Error) => {
        throw new Error(err instanceof PollAbort ? err.message : `${err.message}\n--- kube-apiserver.log ---\n${apiserver.logTail()}`);
      });
      return apiserver;
    };
    const cluster: OwnedCluster = new OwnedCluster(info, processes, removeWorkDir, async () => {
      const old = [...processes].reverse().find((p) => p.name === 'kube-apiserver');
      if (old) {
        await old.stop();
        processes.splice(processes.indexOf(old), 1);
      }
      await startApiserver();
    });
    await startApiserver();
    log(`>> kube-apiserver ready at ${server}`);

    await cluster.apply(NODEPOOL_CRD);
    await cluster.apply(POOLVIEW_RBAC);
    await poll('NodePool CRD established', async () => {
      const crd = await cluster.get<{ status?: { conditions?: { type: string; status: string }[] } } & KubeObject>(
        'apiextensions.k8s.io/v1', 'CustomResourceDefinition', NODEPOOL_CRD.metadata.name,
      );
      return crd?.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
    }, 30_000, 100);
    for (const version of ['v1beta2', 'v1beta1']) {
      await poll(`nodepools ${version} served`, async () => {
        const { status } = await cluster.request('GET', `/apis/apps.openyurt.io/${version}/nodepools`, { allow: [404] });
        return status === 200;
      }, 30_000, 100);
    }
    // The apiserver creates namespace "default" and its kubernetes Service shortly after /readyz.
    await poll('default/kubernetes Service', async () => (await cluster.get('v1', 'Service', 'kubernetes', 'default')) !== undefined, 30_000, 100);
    return cluster;
  } catch (err) {
    return fail(err);
  }
}
