// Real kube-proxy (iptables mode) in its own network namespace, and a reader of the rules it
// programs. The namespace reaches the host through a veth pair; the API kube-proxy talks to (poolview
// or the apiserver, both on the host's loopback) is forwarded to the host end of the pair.
import { execFileSync } from 'node:child_process';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe } from 'vitest';
import type { Cluster, Identity } from './cluster.js';
import { onExit, pidAlive, poll, PollAbort, runOk, startProcess, type ManagedProcess } from './processes.js';

// ---------------------------------------------------------------------------------------------
// Support check

let support: string | undefined | null = null;

/** Why kube-proxy in a netns cannot run here, or undefined when it can. */
export function netnsUnsupportedReason(): string | undefined {
  if (support !== null) return support;
  support = (() => {
    if (process.platform !== 'linux') return 'not Linux';
    if (process.getuid?.() !== 0) return 'not root (network namespaces and iptables need root)';
    for (const tool of ['ip', 'iptables', 'iptables-save', 'iptables-restore']) {
      try {
        execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
      } catch {
        return `${tool} not found (apt-get install -y iptables iproute2)`;
      }
    }
    const probe = `pvprobe${process.pid}`;
    try {
      execFileSync('ip', ['netns', 'add', probe], { stdio: 'pipe' });
      execFileSync('ip', ['netns', 'exec', probe, 'iptables-save', '-t', 'nat'], { stdio: 'pipe' });
    } catch (err) {
      return `no network namespace / iptables support: ${String((err as { stderr?: Buffer }).stderr ?? err).trim().split('\n')[0]}`;
    } finally {
      try {
        execFileSync('ip', ['netns', 'del', probe], { stdio: 'ignore' });
      } catch {
        // was not created
      }
    }
    return undefined;
  })();
  return support;
}

/**
 * `describe`, or `describe.skip` with one line saying why kube-proxy cannot run here. On CI
 * (CI=true) a missing capability is an error, never a skip.
 */
export function describeWithKubeProxy(): typeof describe | typeof describe.skip {
  const why = netnsUnsupportedReason();
  if (!why) return describe;
  if (process.env.CI === 'true' || process.env.CI === '1') throw new Error(`kube-proxy e2e tests cannot run on CI: ${why}`);
  console.warn(`[e2e] skipping kube-proxy tests: ${why}`);
  return describe.skip;
}

// ---------------------------------------------------------------------------------------------
// Network namespace with a veth pair

export interface NodeNetns {
  name: string;
  /** Address of the host end of the veth pair (reachable from inside the namespace). */
  hostIP: string;
  /** Address of the namespace end: the node's InternalIP. */
  nodeIP: string;
  /** Runs a command inside the namespace. */
  exec(args: string[]): Promise<string>;
  remove(): Promise<void>;
}

let netnsCounter = 0;

function removeStaleNetns(): void {
  let names: string[] = [];
  try {
    names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0]!);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^pv(\d+)x\d+$/.exec(name);
    if (m && !pidAlive(Number(m[1]))) {
      try {
        execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
  }
}

/** A free 10.250.a.b/30 (not on any host interface). */
async function pickSubnet(): Promise<[hostIP: string, nodeIP: string]> {
  const used = await runOk('ip', ['-o', '-4', 'addr', 'show']);
  for (let i = 0; i < 100; i++) {
    const a = Math.floor(Math.random() * 256);
    const b = Math.floor(Math.random() * 64) * 4;
    const prefix = `10.250.${a}.`;
    const taken = [0, 1, 2, 3].some((d) => used.includes(` ${prefix}${b + d}/`));
    if (!taken) return [`${prefix}${b + 1}`, `${prefix}${b + 2}`];
  }
  throw new Error('no free 10.250.x.y/30 subnet');
}

/** Creates a network namespace with loopback up and a veth pair to the host. */
export async function createNodeNetns(): Promise<NodeNetns> {
  removeStaleNetns();
  const n = netnsCounter++;
  const name = `pv${process.pid}x${n}`;
  const hostVeth = `pvh${process.pid}x${n}`.slice(0, 15);
  const [hostIP, nodeIP] = await pickSubnet();
  let removed = false;
  const removeSync = (): void => {
    if (removed) return;
    removed = true;
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' }); // takes the veth pair with it
    } catch {
      // already gone
    }
    try {
      execFileSync('ip', ['link', 'del', hostVeth], { stdio: 'ignore' });
    } catch {
      // gone with the namespace
    }
  };
  const unregister = onExit(removeSync);
  try {
    await runOk('ip', ['netns', 'add', name]);
    const inNs = (...args: string[]): Promise<string> => runOk('ip', ['netns', 'exec', name, ...args]);
    await inNs('ip', 'link', 'set', 'lo', 'up');
    await runOk('ip', ['link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name]);
    await runOk('ip', ['addr', 'add', `${hostIP}/30`, 'dev', hostVeth]);
    await runOk('ip', ['link', 'set', hostVeth, 'up']);
    await inNs('ip', 'addr', 'add', `${nodeIP}/30`, 'dev', 'eth0');
    await inNs('ip', 'link', 'set', 'eth0', 'up');
    // A default route, so kube-proxy's node-IP and "primary" address detection find eth0.
    await inNs('ip', 'route', 'add', 'default', 'via', hostIP);
  } catch (err) {
    unregister();
    removeSync();
    throw err;
  }
  return {
    name,
    hostIP,
    nodeIP,
    exec: (args) => runOk('ip', ['netns', 'exec', name, ...args]),
    async remove() {
      unregister();
      removeSync();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// TCP forwarder: host end of the veth pair → an address on the host's loopback

export interface Forwarder {
  /** host:port to connect to */
  address: string;
  close(): Promise<void>;
}

export async function forwardTcp(listenHost: string, target: { host: string; port: number }): Promise<Forwarder> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, listenHost, resolve);
  });
  const port = (server.address() as { port: number }).port;
  return {
    address: `${listenHost}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// iptables-save parsing

/** One service port as kube-proxy programmed it ("ns/name:port"). */
export interface ServiceRules {
  /** "namespace/name:portName" (kube-proxy's ServicePortName). */
  name: string;
  clusterIP?: string;
  port?: number;
  protocol?: string;
  /** Endpoint "ip:port" targets (DNAT) of the service's chain, sorted. */
  endpoints: string[];
  nodePort?: number;
  /** True when kube-proxy rejects traffic because the service has no (usable) endpoints. */
  noEndpoints: boolean;
}

export interface ProxyRules {
  /** Keyed by "namespace/name:portName". */
  services: Map<string, ServiceRules>;
  /** True once kube-proxy has done its first full sync (its KUBE-SERVICES chain exists). */
  synced: boolean;
  /** iptables-save output of the nat and filter tables. */
  raw: string;
}

/** Splits an iptables-save rule line into arguments, honouring double quotes. */
function splitRule(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!);
  return out;
}

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

/** Parses `iptables-save` output (nat + filter tables) into what kube-proxy programmed. */
export function parseIptablesSave(raw: string): ProxyRules {
  const services = new Map<string, ServiceRules>();
  const jumps = new Map<string, string[]>(); // chain → jump targets
  const dnat = new Map<string, string>(); // KUBE-SEP-* → ip:port
  const serviceChain = new Map<string, string>(); // ServicePortName → KUBE-SVC-*/KUBE-SVL-*
  let table = '';
  let synced = false;
  const svc = (name: string): ServiceRules => {
    let s = services.get(name);
    if (!s) services.set(name, (s = { name, endpoints: [], noEndpoints: false }));
    return s;
  };
  for (const line of raw.split('\n')) {
    if (line.startsWith('*')) table = line.slice(1).trim();
    if (table === 'nat' && line.startsWith(':KUBE-SERVICES ')) synced = true;
    if (!line.startsWith('-A ')) continue;
    const args = splitRule(line);
    const chain = args[1]!;
    const target = option(args, '-j');
    const comment = option(args, '--comment');
    if (target) jumps.set(chain, [...(jumps.get(chain) ?? []), target]);
    if (table === 'nat') {
      if (chain.startsWith('KUBE-SEP-') && target === 'DNAT') {
        const to = option(args, '--to-destination');
        if (to) dnat.set(chain, to);
      } else if (chain === 'KUBE-SERVICES' && comment?.endsWith(' cluster IP') && target) {
        const s = svc(comment.slice(0, -' cluster IP'.length));
        s.clusterIP = option(args, '-d')?.replace(/\/32$/, '');
        s.port = Number(option(args, '--dport'));
        s.protocol = option(args, '-p')?.toUpperCase();
        serviceChain.set(s.name, target);
      } else if (chain === 'KUBE-NODEPORTS' && comment && target) {
        svc(comment).nodePort = Number(option(args, '--dport'));
      }
    } else if (table === 'filter' && comment?.endsWith(' has no endpoints')) {
      const s = svc(comment.slice(0, -' has no endpoints'.length));
      s.noEndpoints = true;
      if (chain === 'KUBE-SERVICES') {
        s.clusterIP ??= option(args, '-d')?.replace(/\/32$/, '');
        s.port ??= Number(option(args, '--dport'));
        s.protocol ??= option(args, '-p')?.toUpperCase();
      } else if (chain === 'KUBE-EXTERNAL-SERVICES' && option(args, '--dst-type') === 'LOCAL') {
        s.nodePort ??= Number(option(args, '--dport'));
      }
    }
  }
  for (const [name, chain] of serviceChain) {
    const seps = (jumps.get(chain) ?? []).filter((t) => t.startsWith('KUBE-SEP-'));
    svc(name).endpoints = seps.map((sep) => dnat.get(sep)).filter((e): e is string => !!e).sort();
  }
  return { services, synced, raw };
}

// ---------------------------------------------------------------------------------------------
// kube-proxy

export interface KubeProxyOptions {
  cluster: Cluster;
  /** Node name (--hostname-override). */
  nodeName: string;
  /** The API kube-proxy talks to, as reachable from the host, e.g. poolview's URL; default: the apiserver. */
  server?: string;
  /** Credentials in kube-proxy's kubeconfig; default kubeProxy. */
  identity?: Identity;
  /** false → --feature-gates=WatchListClient=false (classic LIST+WATCH); default: the 1.35 default (streaming list). */
  watchListClient?: boolean;
  /** Create the Node (InternalIP = the namespace's address) before start and delete it at stop; default true. */
  createNode?: boolean;
  /** NodePool label of the created Node. */
  pool?: string;
  /** An existing namespace to run in (e.g. when poolview must be bound to its hostIP first); default: a new one. */
  netns?: NodeNetns;
  extraArgs?: string[];
}

export interface KubeProxy {
  nodeName: string;
  netns: NodeNetns;
  /** The URL kube-proxy's kubeconfig points at (inside the namespace's view). */
  server: string;
  process: ManagedProcess;
  /** The current iptables rules in the namespace. */
  rules(): Promise<ProxyRules>;
  /** Polls rules() until `predicate` holds; throws with the rules and kube-proxy's log otherwise. */
  waitFor(predicate: (rules: ProxyRules) => boolean, timeoutMs?: number, what?: string): Promise<ProxyRules>;
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

/** Starts kube-proxy in a network namespace; resolves after its first full sync of the rules. */
export async function startKubeProxy(opts: KubeProxyOptions): Promise<KubeProxy> {
  const { cluster, nodeName } = opts;
  const createNode = opts.createNode ?? true;
  const ownNetns = !opts.netns;
  const netns = opts.netns ?? (await createNodeNetns());
  const cleanups: (() => Promise<void>)[] = [];
  const cleanup = async (): Promise<void> => {
    for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => {});
  };
  if (ownNetns) cleanups.push(() => netns.remove());
  try {
    const upstream = new URL(opts.server ?? cluster.server);
    let server = upstream.toString().replace(/\/$/, '');
    if (upstream.hostname !== netns.hostIP) {
      const fwd = await forwardTcp(netns.hostIP, {
        host: upstream.hostname,
        port: Number(upstream.port || (upstream.protocol === 'https:' ? 443 : 80)),
      });
      cleanups.push(() => fwd.close());
      server = `${upstream.protocol}//${fwd.address}`;
    }
    if (createNode) {
      await cluster.createNode(nodeName, { internalIP: netns.nodeIP, pool: opts.pool });
      cleanups.push(() => cluster.delete('v1', 'Node', nodeName));
    }
    const kubeconfig = cluster.kubeconfig(opts.identity ?? 'kubeProxy', server);
    const args = [
      join(cluster.binDir, 'kube-proxy'),
      `--kubeconfig=${kubeconfig}`,
      '--proxy-mode=iptables',
      `--hostname-override=${nodeName}`,
      '--cluster-cidr=10.244.0.0/16',
      '--conntrack-max-per-core=0',
      '--conntrack-tcp-timeout-established=0s',
      '--conntrack-tcp-timeout-close-wait=0s',
      '--metrics-bind-address=127.0.0.1:10249',
      '--healthz-bind-address=127.0.0.1:10256',
      '--nodeport-addresses=primary',
      '--v=2',
      ...(opts.watchListClient === false ? ['--feature-gates=WatchListClient=false'] : []),
      ...(opts.extraArgs ?? []),
    ];
    const proc = startProcess('kube-proxy', args, {
      logFile: join(cluster.workDir, `kube-proxy-${nodeName}.log`),
      prefix: ['ip', 'netns', 'exec', netns.name],
    });
    cleanups.push(() => proc.stop());

    const rules = async (): Promise<ProxyRules> => {
      const [nat, filter] = await Promise.all([
        netns.exec(['iptables-save', '-t', 'nat']),
        netns.exec(['iptables-save', '-t', 'filter']),
      ]);
      return parseIptablesSave(`${nat}\n${filter}`);
    };
    const waitFor = async (predicate: (r: ProxyRules) => boolean, timeoutMs = 30_000, what = 'kube-proxy rules'): Promise<ProxyRules> => {
      let last: ProxyRules | undefined;
      try {
        return await poll(what, async () => {
          if (!proc.running()) throw new PollAbort(`kube-proxy exited`);
          last = await rules();
          return predicate(last) ? last : undefined;
        }, timeoutMs, 250);
      } catch (err) {
        const services = last ? JSON.stringify([...last.services.values()], null, 1) : '(none read)';
        throw new Error(`${(err as Error).message}\n--- services in iptables ---\n${services}\n--- kube-proxy log ---\n${proc.logTail(30)}`);
      }
    };
    await waitFor((r) => r.synced, 60_000, `kube-proxy ${nodeName} first sync`);
    return {
      nodeName,
      netns,
      server,
      process: proc,
      rules,
      waitFor,
      logTail: (lines) => proc.logTail(lines),
      stop: cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

