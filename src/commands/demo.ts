// `poolview demo`: an embedded control plane (the real one from the test harness when its binaries
// are cached, else the in-process fake apiserver), two node pools, a poolview for a node of each,
// and, live in the terminal, what each node's kube-proxy sees while listen annotations, topology
// keys and pool membership change.
import { spawnSync } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import type { CliIO } from '../cli.js';
import type { KubeObject } from '../../filters/types.js';
import { startPoolview, type RunningPoolview } from '../app.js';
import { upstreamFromKubeconfig, upstreamFromUrl } from '../upstream.js';
import { createLogger } from '../log.js';
import { DEFAULTS } from '../options.js';
import { jsonLines } from '../json-lines.js';
import type { Upstream } from '../types.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const NS = 'default';
const POOLS: Record<string, string[]> = { hangzhou: ['edge-1', 'edge-2'], shanghai: ['edge-3'] };
const WATCHED = ['edge-1', 'edge-3'];
const IPS: Record<string, string> = { 'edge-1': '10.244.1.10', 'edge-2': '10.244.2.10', 'edge-3': '10.244.3.10' };
const KUBE_PROXY_UA = 'kube-proxy/v1.35.4 (linux/amd64) kubernetes/demo';

const HELP = `Usage: poolview demo [--fake] [--once] [--interval-ms N]

Runs an embedded control plane with two node pools (hangzhou: edge-1, edge-2; shanghai: edge-3),
a poolview for edge-1 and one for edge-3, and shows what each node's kube-proxy sees while the demo
flips a listen annotation, a topology key and a node's pool. Ctrl-C stops it.

  --fake          use the in-process fake apiserver even when the real binaries are cached
  --once          run the scenario once and exit (default: repeat until Ctrl-C)
  --interval-ms   pause between steps (default 2500)
`;

/** The control plane the demo drives: writes with admin rights, poolview's own upstream. */
interface Backend {
  name: string;
  upstream: Upstream;
  put(obj: KubeObject): Promise<void>;
  setPoolNodes(pool: string, nodes: string[]): Promise<void>;
  stop(): Promise<void>;
}

function service(name: string, type: string, annotations: Record<string, string>): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: NS, annotations },
    spec: { type, selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
  };
}

function slice(svc: string, nodes: string[]): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${svc}-demo`, namespace: NS, labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4',
    endpoints: nodes.map((node) => ({ addresses: [IPS[node]], conditions: { ready: true }, nodeName: node })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

function nodeObject(name: string, pool: string): KubeObject {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { 'apps.openyurt.io/nodepool': pool } } };
}

function cachedBinaries(): string | undefined {
  const r = spawnSync('bash', [resolve(repo, 'test/cluster/build.sh'), '--cached-only'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim().split('\n').pop() : undefined;
}

async function realBackend(binDir: string): Promise<Backend> {
  const { startCluster } = await import('../../test/support/cluster.js');
  const cluster = await startCluster({ binDir });
  const upstream = await upstreamFromKubeconfig(cluster.kubeconfig('poolview'));
  return {
    name: `real kube-apiserver + etcd (${binDir.split('/').pop()})`,
    upstream,
    put: async (obj) => {
      if (obj.kind === 'Node') await cluster.createNode(obj.metadata.name!, { internalIP: IPS[obj.metadata.name!], pool: obj.metadata.labels!['apps.openyurt.io/nodepool'] });
      else await cluster.apply(obj as never);
    },
    setPoolNodes: async (pool, nodes) => {
      if (!(await cluster.get('apps.openyurt.io/v1beta2', 'NodePool', pool))) await cluster.createNodePool(pool, { nodes });
      else await cluster.setNodePoolNodes(pool, nodes);
    },
    stop: async () => {
      upstream.close();
      await cluster.stop();
    },
  };
}

async function fakeBackend(): Promise<Backend> {
  const { startFakeApiserver } = await import('../../test/fake/apiserver.js');
  const fake = await startFakeApiserver({ bookmarkIntervalMs: 1000 });
  // Like kubelets renewing their leases: revisions keep moving, as in any real cluster.
  fake.create('leases', { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'edge-1', namespace: 'kube-node-lease' } });
  const leases = setInterval(() => fake.update('leases', fake.get('leases', 'kube-node-lease', 'edge-1')!), 200);
  const resource = (obj: KubeObject) => ({ Service: 'services', EndpointSlice: 'endpointslices', Node: 'nodes', NodePool: 'nodepools' })[obj.kind!]!;
  const put = async (obj: KubeObject) => {
    const r = resource(obj);
    if (fake.get(r, obj.metadata.namespace, obj.metadata.name!)) fake.update(r, obj);
    else fake.create(r, obj);
  };
  return {
    name: 'in-process fake apiserver (build the real one with: bash test/cluster/build.sh)',
    upstream: upstreamFromUrl(fake.url),
    put,
    setPoolNodes: (pool, nodes) => put({ apiVersion: 'apps.openyurt.io/v1beta2', kind: 'NodePool', metadata: { name: pool }, spec: { type: 'Edge' }, status: { nodes } }),
    stop: async () => {
      clearInterval(leases);
      await fake.close();
    },
  };
}

/** What one node's kube-proxy holds, kept by list+watch through that node's poolview. */
class NodeView {
  readonly services = new Map<string, KubeObject>();
  readonly slices = new Map<string, KubeObject>();
  private readonly abort = new AbortController();

  constructor(
    readonly node: string,
    private readonly url: string,
    private readonly onEvent: (line: string) => void,
  ) {}

  async start(): Promise<void> {
    await Promise.all([this.follow('/api/v1/services', this.services), this.follow('/apis/discovery.k8s.io/v1/endpointslices', this.slices)]);
  }

  stop(): void {
    this.abort.abort();
  }

  private async follow(path: string, store: Map<string, KubeObject>): Promise<void> {
    const get = (query: string) => request(`${this.url}${path}${query}`, { headers: { 'user-agent': KUBE_PROXY_UA }, signal: this.abort.signal });
    const listed = await get('');
    const list = (await listed.body.json()) as { items: KubeObject[]; metadata: { resourceVersion: string } };
    if (listed.statusCode !== 200) throw new Error(`LIST ${path} through poolview for ${this.node}: HTTP ${listed.statusCode}`);
    for (const item of list.items) store.set(item.metadata.name!, item);
    let rv = list.metadata.resourceVersion;
    void (async () => {
      while (!this.abort.signal.aborted) {
        try {
          const res = await get(`?watch=true&allowWatchBookmarks=true&resourceVersion=${rv}`);
          for await (const line of jsonLines(res.body)) {
            const event = JSON.parse(line) as { type: string; object: KubeObject & { code?: number } };
            if (event.type === 'ERROR') {
              const relist = (await (await get('')).body.json()) as typeof list;
              store.clear();
              for (const item of relist.items) store.set(item.metadata.name!, item);
              rv = relist.metadata.resourceVersion;
              break;
            }
            rv = event.object.metadata.resourceVersion ?? rv;
            if (event.type === 'BOOKMARK') continue;
            const name = event.object.metadata.name!;
            if (event.type === 'DELETED') store.delete(name);
            else store.set(name, event.object);
            this.onEvent(`${event.type.padEnd(8)} ${event.object.kind} ${name} (rv ${rv})`);
          }
        } catch {
          if (!this.abort.signal.aborted) await new Promise((r) => setTimeout(r, 200));
        }
      }
    })();
  }

  summary(): string {
    const services = [...this.services.keys()].filter((n) => n !== 'kubernetes').sort();
    const endpoints = [...this.slices.values()]
      .filter((s) => s.metadata.name !== 'kubernetes')
      .map((s) => `${s.metadata.labels?.['kubernetes.io/service-name']}→[${((s.endpoints as Array<{ nodeName?: string }>) ?? []).map((e) => e.nodeName).join(' ')}]`)
      .sort();
    return `services: ${services.join(', ') || '-'}   endpoints: ${endpoints.join('  ') || '-'}`;
  }
}

export async function run(argv: string[], io: CliIO): Promise<number> {
  let values: { fake?: boolean; once?: boolean; 'interval-ms'?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { fake: { type: 'boolean' }, once: { type: 'boolean' }, 'interval-ms': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }));
  } catch (err) {
    io.stderr.write(`poolview demo: ${(err as Error).message}\n`);
    return 2;
  }
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
  const interval = Number(values['interval-ms'] ?? 2500);
  const say = (text: string) => io.stdout.write(text + '\n');
  const binDir = values.fake ? undefined : cachedBinaries();
  say(`poolview demo — starting ${binDir ? 'a real kube-apiserver + etcd' : 'the in-process fake apiserver'} …`);
  const backend = binDir ? await realBackend(binDir) : await fakeBackend();
  const proxies: RunningPoolview[] = [];
  const views: NodeView[] = [];
  let stopping = false;
  const log = createLogger('warn');
  // Ctrl-C reaches the control plane's processes too: what poolview logs about them going away is noise.
  const stop = io.stopSignal().then(() => {
    stopping = true;
    log.level = 'silent';
  });
  try {
    for (const [pool, nodes] of Object.entries(POOLS)) {
      for (const node of nodes) await backend.put(nodeObject(node, pool));
      await backend.setPoolNodes(pool, nodes);
    }
    const listenBoth = { 'nodeport.openyurt.io/listen': 'hangzhou,shanghai' };
    const byPool = { 'openyurt.io/topologyKeys': 'openyurt.io/nodepool' };
    await backend.put(service('web', 'NodePort', listenBoth));
    await backend.put(slice('web', ['edge-1', 'edge-3']));
    await backend.put(service('api', 'ClusterIP', byPool));
    await backend.put(slice('api', ['edge-1', 'edge-2', 'edge-3']));

    for (const node of WATCHED) {
      const proxy = await startPoolview(
        { nodeName: node, port: 0, healthPort: 0, anonymousRequests: 'proxy-identity', logLevel: 'warn' },
        { upstream: backend.upstream, logger: log },
      );
      proxies.push(proxy);
      const view = new NodeView(node, proxy.url, (line) => say(`  [${node}] kube-proxy got ${line}`));
      await view.start();
      views.push(view);
    }
    say(`control plane: ${backend.name}`);
    say(`pools: hangzhou = edge-1, edge-2; shanghai = edge-3. poolview runs for edge-1 (${proxies[0].url}) and edge-3 (${proxies[1].url}).`);
    const show = () => {
      for (const view of views) say(`  ${view.node.padEnd(7)} ${view.summary()}`);
    };
    say('\nwhat each node\'s kube-proxy sees:');
    show();

    const steps: Array<[string, () => Promise<void>]> = [
      ['web: nodeport.openyurt.io/listen hangzhou,shanghai → hangzhou (shanghai drops the NodePort)', () => backend.put(service('web', 'NodePort', { 'nodeport.openyurt.io/listen': 'hangzhou' }))],
      ['web: listen back to hangzhou,shanghai', () => backend.put(service('web', 'NodePort', listenBoth))],
      ['api: openyurt.io/topologyKeys → kubernetes.io/hostname (each node keeps its own endpoint)', () => backend.put(service('api', 'ClusterIP', { 'openyurt.io/topologyKeys': 'kubernetes.io/hostname' }))],
      ['api: topology annotation removed (every endpoint)', () => backend.put(service('api', 'ClusterIP', {}))],
      ['api: topology back to openyurt.io/nodepool', () => backend.put(service('api', 'ClusterIP', byPool))],
      ['edge-2 moves from hangzhou to shanghai (NodePool status.nodes)', async () => {
        await backend.setPoolNodes('hangzhou', ['edge-1']);
        await backend.setPoolNodes('shanghai', ['edge-2', 'edge-3']);
      }],
      ['edge-2 moves back to hangzhou', async () => {
        await backend.setPoolNodes('shanghai', ['edge-3']);
        await backend.setPoolNodes('hangzhou', ['edge-1', 'edge-2']);
      }],
    ];
    do {
      for (const [title, step] of steps) {
        if (stopping) break;
        await Promise.race([new Promise((r) => setTimeout(r, interval)), stop]);
        if (stopping) break;
        say(`\n» ${title}`);
        await step().catch((err: Error) => {
          if (!stopping) throw err;
        });
        // A scope change waits up to --scope-change-wait for an upstream revision past it (README,
        // "Scope changes"); nothing but the steps writes EndpointSlices here.
        await Promise.race([new Promise((r) => setTimeout(r, Math.min(interval, 1000) + DEFAULTS.scopeChangeWaitMs)), stop]);
        if (stopping) break;
        show();
      }
    } while (!values.once && !stopping);
    return 0;
  } catch (err) {
    // Interrupted while starting: the control plane went away first.
    if (stopping) return 0;
    throw err;
  } finally {
    say('\nstopping …');
    for (const view of views) view.stop();
    for (const proxy of proxies) await proxy.close();
    await backend.stop();
  }
}
