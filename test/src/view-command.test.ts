// `poolview view` against the in-process fake apiserver: what a node's component sees, and why.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { listensIn } from '../../filters/nodeportisolation.js';
import { HELP, listenVerdict, parseViewArgs, run, type ViewReport } from '../../src/commands/view.js';
import { UsageError } from '../../src/options.js';
import { upstreamFromUrl, type KubeUpstream } from '../../src/upstream.js';
import { startFakeApiserver, type FakeApiserver } from '../fake/apiserver.js';

function capture() {
  let stdout = '';
  let stderr = '';
  return {
    io: { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) } },
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
  };
}

const LISTEN = 'nodeport.openyurt.io/listen';
const AUTO_LISTEN = 'nodeport.openyurt.io/auto-listen';
const TOPOLOGY = 'openyurt.io/topologyKeys';

const service = (name: string, type: string, annotations: Record<string, string> = {}) => ({
  metadata: { name, namespace: 'default', annotations },
  spec: { type, ports: [{ port: 80 }], ...(type === 'ClusterIP' ? {} : { ports: [{ port: 80, nodePort: 30080 }] }) },
});

const slice = (name: string, serviceName: string, endpoints: Array<[string, string | undefined]>) => ({
  metadata: { name, namespace: 'default', labels: { 'kubernetes.io/service-name': serviceName } },
  addressType: 'IPv4',
  endpoints: endpoints.map(([ip, node]) => ({ addresses: [ip], conditions: { ready: true }, ...(node ? { nodeName: node } : {}) })),
  ports: [{ port: 80, protocol: 'TCP' }],
});

let fake: FakeApiserver;
let upstream: KubeUpstream;

async function view(argv: string[], syncTimeoutMs?: number) {
  const out = capture();
  const code = await run(argv, out.io, { upstream, syncTimeoutMs, env: {} });
  return { code, stdout: out.stdout, stderr: out.stderr };
}

async function viewJson(argv: string[]): Promise<ViewReport> {
  const { code, stdout, stderr } = await view([...argv, '-o', 'json']);
  expect(stderr).toBe('');
  expect(code).toBe(0);
  return JSON.parse(stdout) as ViewReport;
}

beforeAll(async () => {
  fake = await startFakeApiserver();
  upstream = upstreamFromUrl(fake.url);
  for (const [name, pool] of [['n1', 'pool-a'], ['n2', 'pool-a'], ['n3', 'pool-b'], ['n4', undefined]] as const) {
    fake.create('nodes', { metadata: { name, labels: pool ? { 'apps.openyurt.io/nodepool': pool } : {} } });
  }
  fake.create('nodepools', { apiVersion: 'apps.openyurt.io/v1beta2', kind: 'NodePool', metadata: { name: 'pool-a' }, spec: { type: 'Edge' }, status: { nodes: ['n1', 'n2'] } });
  fake.create('nodepools', { apiVersion: 'apps.openyurt.io/v1beta2', kind: 'NodePool', metadata: { name: 'pool-b' }, spec: { type: 'Edge' }, status: { nodes: ['n3'] } });

  fake.create('services', service('web', 'NodePort', { [LISTEN]: 'pool-a', [TOPOLOGY]: 'openyurt.io/nodepool' }));
  fake.create('services', service('open', 'LoadBalancer', { [LISTEN]: '*' }));
  fake.create('services', service('closed', 'NodePort', { [LISTEN]: '-pool-b,*' }));
  fake.create('services', service('bonly', 'NodePort', { [LISTEN]: 'pool-b' }));
  fake.create('services', service('api', 'ClusterIP', { [TOPOLOGY]: 'openyurt.io/nodepool', [LISTEN]: 'pool-a' }));
  fake.create('services', service('plain', 'ClusterIP'));
  fake.create('services', service('auto', 'NodePort', { [AUTO_LISTEN]: 'true' }));

  fake.create('endpointslices', slice('web-x1', 'web', [['10.0.0.1', 'n1'], ['10.0.0.2', 'n2'], ['10.0.0.3', 'n3']]));
  fake.create('endpointslices', slice('api-x1', 'api', [['10.0.1.1', 'n1'], ['10.0.1.3', 'n3'], ['10.0.1.9', undefined]]));
  fake.create('endpointslices', slice('plain-x1', 'plain', [['10.0.2.1', 'n1'], ['10.0.2.3', 'n3']]));
  fake.create('endpointslices', slice('auto-x1', 'auto', [['10.0.3.1', 'n1']]));
  fake.create('endpointslices', slice('orphan-x1', 'gone', [['10.0.4.1', 'n1']]));
});

afterAll(async () => {
  await upstream?.close();
  await fake?.close();
});

describe('poolview view (fake apiserver)', () => {
  it('-o json: kube-proxy on n3 (pool-b) — Services and endpoints out of view, with the reason', async () => {
    const report = await viewJson(['--node', 'n3']);
    expect(report).toMatchObject({ node: 'n3', pool: 'pool-b', component: 'kube-proxy' });
    expect(report.filters).toEqual({ services: ['discardcloudservice', 'nodeportisolation'], endpointslices: ['servicetopology', 'forwardkubesvctraffic'], pods: [], configmaps: [] });

    const svc = Object.fromEntries(report.services.map((s) => [s.name, s]));
    expect(svc.web).toEqual({
      namespace: 'default',
      name: 'web',
      type: 'NodePort',
      visible: false,
      reason: 'nodeportisolation: nodeport.openyurt.io/listen="pool-a" does not enable pool pool-b',
    });
    expect(svc.closed).toMatchObject({ visible: false, reason: 'nodeportisolation: nodeport.openyurt.io/listen="-pool-b,*" disables pool pool-b' });
    expect(svc.open).toMatchObject({ type: 'LoadBalancer', visible: true, reason: 'nodeportisolation: nodeport.openyurt.io/listen="*" enables every pool (*), pool-b included' });
    // ClusterIP Services are not nodeportisolation's business, annotated or not.
    expect(svc.api).toEqual({ namespace: 'default', name: 'api', type: 'ClusterIP', visible: true });
    expect(svc.plain).toEqual({ namespace: 'default', name: 'plain', type: 'ClusterIP', visible: true });
    // auto-listen is ignored with the gate off (the default).
    expect(svc.auto).toMatchObject({ visible: true, reason: 'nodeportisolation: nodeport.openyurt.io/auto-listen="true" is ignored: feature gate NodePortAutoListen is off' });
    // `kubernetes` is not in the fake; every Service created is listed, sorted.
    expect(svc.bonly).toMatchObject({ visible: true, reason: 'nodeportisolation: nodeport.openyurt.io/listen="pool-b" enables pool pool-b' });
    expect(report.services.map((s) => s.name)).toEqual(['api', 'auto', 'bonly', 'closed', 'open', 'plain', 'web']);

    const slices = Object.fromEntries(report.endpointSlices.map((s) => [s.name, s]));
    expect(slices['web-x1']).toEqual({
      namespace: 'default',
      name: 'web-x1',
      service: 'web',
      kept: ['10.0.0.3'],
      removed: [
        { ip: '10.0.0.1', node: 'n1', reason: 'servicetopology: openyurt.io/topologyKeys=openyurt.io/nodepool keeps endpoints on pool pool-b nodes; 10.0.0.1 is on n1 (pool pool-a)' },
        { ip: '10.0.0.2', node: 'n2', reason: 'servicetopology: openyurt.io/topologyKeys=openyurt.io/nodepool keeps endpoints on pool pool-b nodes; 10.0.0.2 is on n2 (pool pool-a)' },
      ],
    });
    expect(slices['api-x1'].kept).toEqual(['10.0.1.3']);
    expect(slices['api-x1'].removed.map((r) => [r.ip, r.node])).toEqual([['10.0.1.1', 'n1'], ['10.0.1.9', null]]);
    expect(slices['api-x1'].removed[1].reason).toMatch(/; 10\.0\.1\.9 names no node$/);
    expect(slices['plain-x1']).toEqual({ namespace: 'default', name: 'plain-x1', service: 'plain', kept: ['10.0.2.1', '10.0.2.3'], removed: [] });
    expect(slices['orphan-x1']).toMatchObject({ service: 'gone', kept: ['10.0.4.1'], removed: [] });
  });

  it('table output: kube-proxy on n1 (pool-a)', async () => {
    const { code, stdout, stderr } = await view(['--node=n1']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const lines = stdout.split('\n');
    expect(lines[0]).toBe('NODE n1   POOL pool-a   COMPONENT kube-proxy');
    expect(lines[1]).toBe('FILTERS   services: discardcloudservice, nodeportisolation   endpointslices: servicetopology, forwardkubesvctraffic');
    expect(stdout).toContain('SERVICES (6 of 7 visible)');
    expect(lines.find((l) => /^default\s+bonly\s/.test(l))).toMatch(
      /^default\s+bonly\s+NodePort\s+no\s+nodeportisolation: nodeport\.openyurt\.io\/listen="pool-b" does not enable pool pool-a$/,
    );
    expect(lines.find((l) => /^default\s+closed\s/.test(l))).toMatch(/\byes\s+nodeportisolation: nodeport\.openyurt\.io\/listen="-pool-b,\*" enables every pool \(\*\), pool-a included$/);
    expect(lines.find((l) => /^default\s+web\s/.test(l))).toMatch(/\byes\s+nodeportisolation: nodeport\.openyurt\.io\/listen="pool-a" enables pool pool-a$/);
    expect(stdout).toContain('ENDPOINTSLICES (3 endpoints removed from 2 of 5)');
    expect(lines.find((l) => /^default\s+web-x1\s/.test(l))).toMatch(/^default\s+web-x1\s+web\s+10\.0\.0\.1,10\.0\.0\.2\s+10\.0\.0\.3$/);
    expect(stdout).toContain('REMOVED ENDPOINTS');
    expect(stdout).toMatch(
      /default\/web-x1\s+10\.0\.0\.3\s+servicetopology: openyurt\.io\/topologyKeys=openyurt\.io\/nodepool keeps endpoints on pool pool-a nodes; 10\.0\.0\.3 is on n3 \(pool pool-b\)\n/,
    );
    expect(stdout.endsWith('\n')).toBe(true);
  });

  it('coredns: endpoints filtered, Services not (nodeportisolation targets kube-proxy only)', async () => {
    const report = await viewJson(['--node', 'n3', '--component', 'CoreDNS/v1.11.1']);
    expect(report.component).toBe('coredns');
    expect(report.filters).toEqual({ services: [], endpointslices: ['servicetopology'], pods: [], configmaps: [] });
    expect(report.services.every((s) => s.visible && s.reason === undefined)).toBe(true);
    expect(report.endpointSlices.find((s) => s.name === 'web-x1')!.kept).toEqual(['10.0.0.3']);
  });

  it('yurt-hub-cfg adds a component: cilium-agent is filtered only once the ConfigMap names it', async () => {
    const before = await viewJson(['--node', 'n3', '--component', 'cilium-agent']);
    expect(before.filters).toEqual({ services: [], endpointslices: [], pods: [], configmaps: [] });
    expect(before.endpointSlices.every((s) => s.removed.length === 0)).toBe(true);
    const { stdout } = await view(['--node', 'n3', '--component', 'cilium-agent']);
    expect(stdout).toContain('No filter targets cilium-agent: it sees Services, EndpointSlices, Pods and ConfigMaps unfiltered.');

    fake.create('configmaps', { metadata: { name: 'yurt-hub-cfg', namespace: 'kube-system' }, data: { servicetopology: 'cilium-agent' } });
    try {
      const after = await viewJson(['--node', 'n3', '--component', 'cilium-agent']);
      expect(after.filters).toEqual({ services: [], endpointslices: ['servicetopology'], pods: [], configmaps: [] });
      expect(after.endpointSlices.find((s) => s.name === 'web-x1')!.kept).toEqual(['10.0.0.3']);
    } finally {
      fake.delete('configmaps', 'kube-system', 'yurt-hub-cfg');
    }
  });

  it('--nodepool-name overrides the node label, as poolview --nodepool-name does', async () => {
    const report = await viewJson(['--node', 'n3', '--nodepool-name', 'pool-a']);
    expect(report.pool).toBe('pool-a');
    expect(report.services.find((s) => s.name === 'web')!.visible).toBe(true);
    expect(report.endpointSlices.find((s) => s.name === 'web-x1')!.kept).toEqual(['10.0.0.1', '10.0.0.2']);
  });

  it('a node in no pool: every NodePort stays, pool topology falls back to the node itself', async () => {
    const report = await viewJson(['--node', 'n4']);
    expect(report.pool).toBeNull();
    expect(report.services.find((s) => s.name === 'web')).toMatchObject({ visible: true, reason: 'nodeportisolation: node n4 is in no pool, so it listens on every NodePort' });
    const web = report.endpointSlices.find((s) => s.name === 'web-x1')!;
    expect(web.kept).toEqual([]);
    expect(web.removed[2]).toEqual({
      ip: '10.0.0.3',
      node: 'n3',
      reason: 'servicetopology: openyurt.io/topologyKeys=openyurt.io/nodepool and node n4 is in no pool, so only endpoints on n4 are kept; 10.0.0.3 is on n3 (pool pool-b)',
    });
  });

  it('NodePortAutoListen: a Service is out of view where none of its ready endpoints run', async () => {
    const n3 = await viewJson(['--node', 'n3', '--feature-gates', 'NodePortAutoListen=true']);
    expect(n3.services.find((s) => s.name === 'auto')).toMatchObject({
      visible: false,
      reason: 'nodeportisolation: nodeport.openyurt.io/auto-listen="true": its ready endpoints run in pool pool-a, not in pool pool-b',
    });
    const n1 = await viewJson(['--node', 'n1', '--feature-gates', 'NodePortAutoListen=true']);
    expect(n1.services.find((s) => s.name === 'auto')).toMatchObject({ visible: true });
  });

  it('a pool without a NodePool: pool topology fails open, and says so', async () => {
    fake.create('nodes', { metadata: { name: 'n5', labels: { 'apps.openyurt.io/nodepool': 'pool-c' } } });
    try {
      const report = await viewJson(['--node', 'n5']);
      expect(report.pool).toBe('pool-c'); // from the node's label
      const web = report.endpointSlices.find((s) => s.name === 'web-x1')!;
      expect(web.kept).toEqual(['10.0.0.1', '10.0.0.2', '10.0.0.3']);
      expect(web.removed).toEqual([]);
      expect(web.note).toBe('servicetopology: openyurt.io/topologyKeys=openyurt.io/nodepool but the members of pool pool-c are not known (no NodePool pool-c); endpoints unchanged');
    } finally {
      fake.delete('nodes', undefined, 'n5');
    }
  });

  it('an unknown node: a warning on stderr, the view of a node in no pool on stdout', async () => {
    const { code, stdout, stderr } = await view(['--node', 'nope', '-ojson']);
    expect(code).toBe(0);
    expect(stderr).toBe('warning: node "nope" not found in the cluster\n');
    expect(JSON.parse(stdout)).toMatchObject({ node: 'nope', pool: null });
  });

  // (src/cli.ts's `import(\`./commands/${name}.js\`)` cannot be resolved under vitest's transform;
  // the CLI dispatch is exercised on the compiled code.)
  it('reads the kubeconfig named by $KUBECONFIG in the CLI environment', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'poolview-view-'));
    try {
      const kubeconfig = join(dir, 'kubeconfig');
      writeFileSync(
        kubeconfig,
        [
          'apiVersion: v1',
          'kind: Config',
          'clusters: [{name: fake, cluster: {server: "' + fake.url + '"}}]',
          'users: [{name: me, user: {token: t}}]',
          'contexts: [{name: fake, context: {cluster: fake, user: me}}]',
          'current-context: fake',
        ].join('\n'),
      );
      const out = capture();
      const code = await run(['--node', 'n3', '-o', 'json'], { ...out.io, env: { KUBECONFIG: kubeconfig } });
      expect(out.stderr).toBe('');
      expect(code).toBe(0);
      const report = JSON.parse(out.stdout) as ViewReport;
      expect(report.services.find((s) => s.name === 'web')!.visible).toBe(false);
      const requests = fake.requests.filter((r) => r.headers['user-agent'] === 'poolview-view');
      expect(requests.at(-1)!.headers.authorization).toBe('Bearer t');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('only reads: no writes reach the apiserver, and requests carry poolview user agents', async () => {
    const from = fake.requests.length;
    await view(['--node', 'n1']);
    const requests = fake.requests.slice(from);
    expect(requests.length).toBeGreaterThan(0);
    expect(requests.every((r) => r.method === 'GET')).toBe(true);
    expect(requests.every((r) => String(r.headers['user-agent']).startsWith('poolview'))).toBe(true);
  });
});

describe('poolview view: usage', () => {
  it('--help prints usage and exits 0 without touching the cluster', async () => {
    const out = capture();
    expect(await run(['--help'], out.io, { upstream: upstreamFromUrl('http://127.0.0.1:9'), env: {} })).toBe(0);
    expect(out.stdout).toBe(HELP);
    expect(HELP).toMatch(/^Usage: poolview view --node NAME/);
    for (const flag of ['--node', '--component', '--nodepool-name', '--kubeconfig', '-o, --output']) expect(HELP).toContain(flag);
  });

  it.each([
    [[], '--node is required'],
    [['--node', 'n1', '-o', 'yaml'], '--output: "yaml" is not one of table, json'],
    [['--node', 'n1', '--bogus'], 'unknown flag --bogus'],
    [['--node', 'n1', '-n', 'x'], 'unknown flag -n'],
    [['--node'], '--node needs a value'],
    [['--node', 'n1', 'extra'], 'unexpected argument "extra"'],
    [['--node', 'n1', '--feature-gates', 'Foo'], '--feature-gates: "Foo" is not Name=true|false'],
  ])('%j → exit 2: %s', async (argv, message) => {
    const out = capture();
    expect(await run(argv, out.io, { upstream: upstreamFromUrl('http://127.0.0.1:9'), env: {} })).toBe(2);
    expect(out.stdout).toBe('');
    expect(out.stderr).toBe(`poolview view: ${message}\nRun 'poolview view --help' for usage.\n`);
  });

  it('parses flag forms and defaults', () => {
    expect(parseViewArgs(['--node=n1', '-ojson', '--component', 'Cilium-Agent/1.16'], {})).toMatchObject({
      node: 'n1',
      output: 'json',
      component: 'cilium-agent',
      configMapName: 'yurt-hub-cfg',
      configMapNamespace: 'kube-system',
    });
    expect(parseViewArgs([], { NODE_NAME: 'from-env' })).toMatchObject({ node: 'from-env', component: 'kube-proxy', output: 'table' });
    expect(parseViewArgs(['--node-name', 'n2', '--output=table', '--kubeconfig', '/k'], {})).toMatchObject({ node: 'n2', output: 'table', kubeconfig: '/k' });
    expect(() => parseViewArgs(['--node', 'n1', '--component', '/x'], {})).toThrow(UsageError);
  });

  it('a kubeconfig that cannot be read is a usage error (exit 2), one line', async () => {
    const out = capture();
    expect(await run(['--node', 'n1', '--kubeconfig', '/nonexistent/kubeconfig'], out.io, { env: {} })).toBe(2);
    expect(out.stderr).toBe('poolview view: cannot read kubeconfig /nonexistent/kubeconfig: no such file\n');
  });

  it('listenVerdict agrees with the filter on every listen value', () => {
    const values = ['', ' ', '*', '-*', 'a', '-a', 'a,-a', '-a,a', 'b', 'b,*', '-a,*', '*,-a', ' a , b ', 'A', 'a,b', '-b,-a', 'foo,bar', 'a/b'];
    for (const listen of values) {
      for (const pool of ['a', 'b', 'c']) expect(listenVerdict(listen, pool).listens, `${JSON.stringify(listen)} / ${pool}`).toBe(listensIn(listen, pool));
    }
  });
});

describe('poolview view: cluster errors (exit 1, one line)', () => {
  let faulty: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((r) => (faulty ? faulty.close(() => r()) : r()));
    faulty = undefined;
  });

  it('an unreachable apiserver fails at once', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const out = capture();
    const started = Date.now();
    const dead = upstreamFromUrl(`http://127.0.0.1:${port}`);
    try {
      expect(await run(['--node', 'n1'], out.io, { upstream: dead, env: {} })).toBe(1);
    } finally {
      await dead.close();
    }
    expect(Date.now() - started).toBeLessThan(5000);
    expect(out.stdout).toBe('');
    expect(out.stderr).toMatch(new RegExp(`^poolview view: cannot reach the apiserver at http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED.*\\n$`));
  });

  it('refused credentials fail at once with the apiserver message', async () => {
    const secured = await startFakeApiserver({ tokens: { good: 'alice' } });
    const bad = upstreamFromUrl(secured.url, 'wrong');
    const out = capture();
    try {
      expect(await run(['--node', 'n1'], out.io, { upstream: bad, env: {} })).toBe(1);
    } finally {
      await bad.close();
      await secured.close();
    }
    expect(out.stderr).toMatch(/^poolview view: list \/api\/v1\/services: HTTP 401 from http:\/\/127\.0\.0\.1:\d+: .+\n$/);
    expect(out.stderr.split('\n')).toHaveLength(2);
  });

  it('a scope source that never syncs times out with the source named', async () => {
    // Between the command and the fake: node LISTs fail with 500, everything else passes through.
    const target = new URL(fake.url);
    faulty = createServer((req, res) => {
      if (req.url?.startsWith('/api/v1/nodes')) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', message: 'etcd is sad', code: 500 }));
        return;
      }
      const upstreamReq = httpRequest({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      req.pipe(upstreamReq);
    });
    await new Promise<void>((r) => faulty!.listen(0, '127.0.0.1', r));
    const via = upstreamFromUrl(`http://127.0.0.1:${(faulty.address() as AddressInfo).port}`);
    const out = capture();
    try {
      expect(await run(['--node', 'n1'], out.io, { upstream: via, syncTimeoutMs: 2000, env: {} })).toBe(1);
    } finally {
      await via.close();
    }
    expect(out.stderr).toBe('poolview view: scope sources not synced within 2s: scope-source-nodes (list /api/v1/nodes: HTTP 500: etcd is sad)\n');
  });
});

describe('poolview view: what the in-cluster filters change (fake apiserver)', () => {
  let fake2: FakeApiserver;
  let upstream2: KubeUpstream;
  beforeAll(async () => {
    fake2 = await startFakeApiserver();
    upstream2 = upstreamFromUrl(fake2.url);
    fake2.create('nodes', { metadata: { name: 'e1' } });
    fake2.create('services', { metadata: { name: 'kubernetes', namespace: 'default' }, spec: { type: 'ClusterIP', clusterIP: '10.96.0.1', clusterIPs: ['10.96.0.1'], ports: [{ name: 'https', port: 443 }] } });
    fake2.create('services', { metadata: { name: 'cloud-lb', namespace: 'default', annotations: { 'svc.openyurt.io/discard': 'true' } }, spec: { type: 'LoadBalancer', ports: [{ port: 80, nodePort: 30081 }] } });
    fake2.create('endpointslices', { metadata: { name: 'kubernetes', namespace: 'default', labels: { 'kubernetes.io/service-name': 'kubernetes' } }, addressType: 'IPv4', endpoints: [{ addresses: ['172.16.0.10'] }], ports: [{ name: 'https', port: 6443 }] });
    fake2.create('configmaps', { metadata: { name: 'kube-proxy', namespace: 'kube-system' }, data: { 'config.conf': 'clientConnection:\n  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf' } });
    const env = [{ name: 'KUBERNETES_SERVICE_HOST', value: '10.0.0.1' }, { name: 'KUBERNETES_SERVICE_PORT', value: '443' }];
    fake2.create('pods', { metadata: { name: 'p-e1', namespace: 'default' }, spec: { nodeName: 'e1', containers: [{ name: 'app', image: 'x', env }] } });
    fake2.create('pods', { metadata: { name: 'p-other', namespace: 'default' }, spec: { nodeName: 'e2', containers: [{ name: 'app', image: 'x', env }] } });
  });
  afterAll(async () => {
    await upstream2?.close();
    await fake2?.close();
  });

  async function report(argv: string[]): Promise<{ json: ViewReport; table: string }> {
    const json = capture();
    expect(await run([...argv, '-o', 'json'], json.io, { upstream: upstream2, env: {} })).toBe(0);
    const table = capture();
    expect(await run(argv, table.io, { upstream: upstream2, env: {} })).toBe(0);
    return { json: JSON.parse(json.stdout) as ViewReport, table: table.stdout };
  }

  it('kubelet: default/kubernetes, its node\'s Pods and kube-proxy\'s ConfigMap, each with the change', async () => {
    const { json, table } = await report(['--node', 'e1', '--component', 'kubelet', '--enable-dummy-if=true']);
    expect(json.proxyAddress).toBe('169.254.2.1:10268');
    expect(json.filters).toEqual({ services: ['masterservice'], endpointslices: [], pods: ['serviceenvupdater'], configmaps: ['inclusterconfig'] });
    expect(json.changed.map((c) => [c.resource, `${c.namespace}/${c.name}`, c.filter])).toEqual([
      ['services', 'default/kubernetes', 'masterservice'],
      ['pods', 'default/p-e1', 'serviceenvupdater'],
      ['configmaps', 'kube-system/kube-proxy', 'inclusterconfig'],
    ]);
    expect(json.changed[0].change).toContain('cluster IP 10.96.0.1 → 169.254.2.1, port https 443 → 10268');
    expect(json.changed[1].change).toBe('app: KUBERNETES_SERVICE_HOST 10.0.0.1 → 169.254.2.1; app: KUBERNETES_SERVICE_PORT 443 → 10268');
    expect(table).toContain('CHANGED OBJECTS (poolview\'s address for in-cluster clients: 169.254.2.1:10268)');
    expect(table).toMatch(/pods\s+default\s+p-e1\s+serviceenvupdater\s+app: KUBERNETES_SERVICE_HOST 10\.0\.0\.1 → 169\.254\.2\.1/);
  });

  it('kube-proxy: the discarded LoadBalancer out of view, the kubernetes slice sent to poolview; --working-mode=cloud and --disabled-filters turn them off', async () => {
    const { json } = await report(['--node', 'e1', '--bind-address', '10.1.2.3', '--secure-port', '10443']);
    expect(json.services.find((s) => s.name === 'cloud-lb')).toMatchObject({ visible: false, reason: 'discardcloudservice: LoadBalancer with svc.openyurt.io/discard="true" is for the cloud' });
    const slice = json.endpointSlices.find((s) => s.name === 'kubernetes')!;
    expect(slice.kept).toEqual(['10.1.2.3']);
    expect(slice.removed).toEqual([{ ip: '172.16.0.10', node: null, reason: 'forwardkubesvctraffic: the kubernetes Service goes to poolview at 10.1.2.3:10443 instead' }]);
    expect(json.changed.map((c) => c.filter)).toEqual(['forwardkubesvctraffic']);

    const cloud = (await report(['--node', 'e1', '--working-mode', 'cloud'])).json;
    expect(cloud.filters).toEqual({ services: ['nodeportisolation'], endpointslices: ['servicetopology'], pods: [], configmaps: [] });
    expect(cloud.services.find((s) => s.name === 'cloud-lb')!.visible).toBe(true);
    const none = (await report(['--node', 'e1', '--component', 'kubelet', '--disabled-filters', '*'])).json;
    expect(none.changed).toEqual([]);
    expect(parseViewArgs.bind(null, ['--node', 'e1', '--disabled-filters', 'nope'], {})).toThrow(UsageError);
  });
});
