// `npm run bench` (issue #8): poolview's performance budgets (docs/design.md), each figure measured
// against its baseline in the same run and reported as a ratio of medians over repeated runs.
//
// Threads: poolview runs in-process on this (main) thread; the upstream (fake apiserver + replay
// server) and the clients run in worker threads, so poolview's CPU and profiles are its own. The
// memory figure runs poolview as a separate process (bin/poolview.js). The passthrough-real section
// runs a real kube-apiserver + etcd (test/support/cluster.ts) from cached binaries as the upstream.
//
// Flags: --quick (small sizes, for development), --only=passthrough,passthrough-real,list,watch,scope,memory,
// --reps=N (default 5), --no-profile.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, readdirSync, renameSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent as UndiciAgent, request as undiciRequest } from 'undici';
import { startPoolview, type RunningPoolview } from '../src/app.js';
import { upstreamFromUrl, type KubeUpstream } from '../src/upstream.js';
import type { Cluster } from '../test/support/cluster.js';
import * as gen from './objects.js';
import { WorkerClient } from './rpc.js';
import { median, now, percentile, threadCpuMs } from './stats.js';
import { Inspector, profileInProcess, topSelfSize, topSelfTime, type TopEntry } from './profile.js';

// ---------------------------------------------------------------- setup

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const RESULTS = join(ROOT, 'bench', 'results');
const args = new Set(process.argv.slice(2));
const argValue = (name: string) => process.argv.slice(2).find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const QUICK = args.has('--quick');
const REPS = Math.max(1, Number(argValue('reps') ?? 5));
const ONLY = argValue('only')?.split(',');
const PROFILE = !args.has('--no-profile');
const SIZES = QUICK ? [500, 2_000, 5_000] : [1_000, 10_000, 50_000];
const [SMALL, MAIN, LARGE] = SIZES;
const SCOPE_WATCHES = QUICK ? [1, 10] : [1, 10, 100];
/** Past this, optional work (memory at the largest size, profiles) is skipped to stay under 10 minutes. */
const SOFT_DEADLINE_MS = (QUICK ? 4 : 7) * 60_000;
const started = now();
const loadAtStart = loadavg().map((l) => Math.round(l * 100) / 100);
const elapsed = () => now() - started;
const want = (section: string) => !ONLY || ONLY.includes(section);

const ES_PATH = '/apis/discovery.k8s.io/v1/endpointslices';
const SVC_PATH = '/api/v1/services';
const KUBECTL = { 'user-agent': 'kubectl/v1.35.4 (linux/amd64) kubernetes/6c6cd7e', accept: 'application/json' };
const KUBE_PROXY = { 'user-agent': 'kube-proxy/v1.35.4 (linux/amd64) kubernetes/6c6cd7e', accept: 'application/json' };
const stamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');

const log = (msg: string) => process.stderr.write(`[bench ${(elapsed() / 1000).toFixed(1).padStart(5)}s] ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Budget = { op: '<=' | '>='; limit: number; text: string };
interface Figure {
  id: string;
  section: string;
  name: string;
  upstream: string;
  unit: string;
  value: number;
  baselineName: string;
  baseline: number | null;
  /** value / baseline, or baseline / value where a lower value is better for the baseline side. */
  ratio: number | null;
  budget: Budget | null;
  met: boolean | null;
  details: Record<string, unknown>;
  profile?: { file: string; top: TopEntry[]; heap?: { file: string; top: TopEntry[] } };
}
const figures: Figure[] = [];
const skipped: string[] = [];
const errors: string[] = [];

function judge(value: number | null, budget: Budget | null): boolean | null {
  if (value === null || budget === null || !Number.isFinite(value)) return null;
  return budget.op === '<=' ? value <= budget.limit : value >= budget.limit;
}

function add(f: Omit<Figure, 'met'> & { judged?: number }): Figure {
  const { judged, ...rest } = f;
  const figure: Figure = { ...rest, met: judge(judged ?? f.ratio, f.budget) };
  figures.push(figure);
  const r = figure.ratio === null ? '' : ` ratio ${figure.ratio.toFixed(3)}`;
  log(`${figure.name}: ${fmt(figure.value)} ${figure.unit} (baseline ${figure.baseline === null ? '-' : fmt(figure.baseline)})${r}${figure.met === false ? '  MISSED' : ''}`);
  return figure;
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a >= 1000 ? Math.round(v).toLocaleString('en-US') : a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toFixed(3);
}

const upstreamWorker = new WorkerClient(new URL('./upstream-worker.js', import.meta.url), { maxOldGenerationSizeMb: 4096 });
const client = new WorkerClient(new URL('./client-worker.js', import.meta.url), { maxOldGenerationSizeMb: 1024 });
const urls = await upstreamWorker.call<{ fake: string; front: string }>('urls');

// ---------------------------------------------------------------- helpers

let pv: RunningPoolview | undefined;
let pvUpstream: KubeUpstream | undefined;

/** Starts poolview in-process against `upstreamUrl` and waits for its scope sources. */
async function startPv(upstreamUrl: string): Promise<RunningPoolview> {
  await stopPv();
  pvUpstream = upstreamFromUrl(upstreamUrl);
  pv = await startPoolview({ nodeName: gen.NODE_NAME, port: 0, healthPort: 0, logLevel: 'error' }, { upstream: pvUpstream });
  await waitSynced(pv.url);
  return pv;
}

async function waitSynced(url: string, timeoutMs = 120_000, headers: Record<string, string> = {}): Promise<void> {
  const deadline = now() + timeoutMs;
  for (;;) {
    // A targeted LIST waits for the scope sources (503 while they sync).
    const res = await fetch(`${url}${SVC_PATH}?limit=1`, { headers: { ...KUBE_PROXY, ...headers } }).catch(() => undefined);
    const text = await res?.text();
    if (res?.status === 200) return;
    if (now() > deadline) throw new Error(`poolview at ${url} not synced: ${res?.status} ${text}`);
    await sleep(200);
  }
}

async function stopPv(): Promise<void> {
  await pv?.close();
  await pvUpstream?.close();
  pv = undefined;
  pvUpstream = undefined;
}

/** Runs `measure` for baseline and poolview alternately, `reps` times each, after one warm-up each. */
async function paired<T>(reps: number, measure: (side: 'direct' | 'poolview') => Promise<T>, floor?: () => T): Promise<{ direct: T[]; poolview: T[]; floor: T[] }> {
  await measure('direct');
  await measure('poolview');
  const out = { direct: [] as T[], poolview: [] as T[], floor: [] as T[] };
  for (let i = 0; i < reps; i++) {
    // The in-process floor is sampled between the two, so that load from elsewhere on a shared
    // machine weighs on all three alike.
    if (floor) out.floor.push(floor());
    out.direct.push(await measure('direct'));
    out.poolview.push(await measure('poolview'));
  }
  return out;
}

async function textOf(op: 'body' | 'streamText', key: Record<string, string>): Promise<string> {
  const { bytes } = await upstreamWorker.call<{ bytes: ArrayBuffer }>(op, key);
  return Buffer.from(bytes).toString('utf8');
}

/** The floor of a filtered LIST: one JSON.parse + JSON.stringify of the same body, in-process (ms; median of a few). */
function listFloor(body: string): () => number {
  let t = now();
  JSON.stringify(JSON.parse(body)); // warm-up
  const n = Math.max(1, Math.min(9, Math.ceil(300 / (now() - t))));
  return () => {
    const samples: number[] = [];
    for (let i = 0; i < n; i++) {
      global.gc?.();
      t = now();
      JSON.stringify(JSON.parse(body));
      samples.push(now() - t);
    }
    return median(samples);
  };
}

/** The floor of a filtered WATCH: one JSON.parse + JSON.stringify per event line (events/s). */
function eventFloor(text: string): () => number {
  const lines = text.split('\n').filter(Boolean);
  const once = () => {
    global.gc?.();
    const t = now();
    for (const line of lines) JSON.stringify(JSON.parse(line));
    return (lines.length * 1000) / (now() - t);
  };
  once();
  return once;
}

function overBudget(): boolean {
  return elapsed() > SOFT_DEADLINE_MS;
}

/** For a missed budget: runs `again` once under the in-process CPU profiler. */
async function profileMiss(figure: Figure, again: () => Promise<unknown>): Promise<void> {
  if (!PROFILE || figure.met !== false) return;
  if (overBudget()) {
    skipped.push(`CPU profile of "${figure.name}" (time)`);
    return;
  }
  const file = join(RESULTS, `${stamp}-${figure.id}.cpuprofile`);
  const { top } = await profileInProcess(file, ROOT, again);
  figure.profile = { file: file.slice(ROOT.length), top };
  log(`  profiled -> ${figure.profile.file}: ${top.map((t) => `${t.function} ${t.percent}%`).join(', ')}`);
}

// ---------------------------------------------------------------- pass-through

async function passThrough(): Promise<void> {
  log('pass-through: GET, LIST 1k/10k, watch delivery (untargeted kubectl; upstream = replay server)');
  const p = await startPv(urls.front);
  const base = (side: 'direct' | 'poolview') => (side === 'direct' ? urls.front : p.url);
  const getPath = `/apis/discovery.k8s.io/v1/namespaces/${gen.namespaceOf(1)}/endpointslices/${gen.serviceName(1)}-abcde`;

  const requests: Array<{ id: string; name: string; path: string; key: string; seq: number; conc: number; total: number }> = [
    { id: 'pt-get', name: 'GET EndpointSlice', path: getPath, key: 'body:es-get', seq: 300, conc: 8, total: 2000 },
    { id: `pt-list-${SMALL}`, name: `LIST ${SMALL} EndpointSlices`, path: ES_PATH, key: `body:es-list-${SMALL}`, seq: 40, conc: 4, total: 120 },
    { id: `pt-list-${MAIN}`, name: `LIST ${MAIN} EndpointSlices`, path: ES_PATH, key: `body:es-list-${MAIN}`, seq: 5, conc: 4, total: 16 },
  ];
  for (const r of requests) {
    const headers = { ...KUBECTL, 'x-bench-replay': r.key };
    const latency = (side: 'direct' | 'poolview') =>
      client.call<{ latencies: number[]; bytes: number }>('fetchMany', { url: base(side) + r.path, headers, count: r.seq, concurrency: 1 }).then((x) => ({ ms: median(x.latencies), bytes: x.bytes / r.seq }));
    const lat = await paired(REPS, latency);
    const d = median(lat.direct.map((x) => x.ms));
    const v = median(lat.poolview.map((x) => x.ms));
    const f = add({
      id: `${r.id}-latency`, section: 'pass-through', name: `pass-through ${r.name} latency (p50)`, upstream: 'replay',
      unit: 'ms', value: v, baselineName: 'direct', baseline: d, ratio: v / d, budget: { op: '<=', limit: 1.1, text: '≤ 1.10×' },
      details: { addedMs: v - d, bytes: lat.poolview[0].bytes, directBytes: lat.direct[0].bytes, sequentialRequests: r.seq, repsDirect: lat.direct.map((x) => x.ms), repsPoolview: lat.poolview.map((x) => x.ms) },
    });
    await profileMiss(f, () => latency('poolview'));

    const throughput = (side: 'direct' | 'poolview') =>
      client.call<{ elapsedMs: number }>('fetchMany', { url: base(side) + r.path, headers, count: r.total, concurrency: r.conc }).then((x) => (r.total * 1000) / x.elapsedMs);
    const thr = await paired(REPS, throughput);
    const dr = median(thr.direct);
    const vr = median(thr.poolview);
    const g = add({
      id: `${r.id}-throughput`, section: 'pass-through', name: `pass-through ${r.name} throughput (${r.conc} in flight)`, upstream: 'replay',
      unit: 'req/s', value: vr, baselineName: 'direct', baseline: dr, ratio: dr / vr, budget: { op: '<=', limit: 1.1, text: '≤ 1.10× (time/req)' },
      details: { requests: r.total, concurrency: r.conc, repsDirect: thr.direct, repsPoolview: thr.poolview },
    });
    await profileMiss(g, () => throughput('poolview'));
  }

  // Watch event delivery: latency at a steady rate, and the rate of a burst.
  await upstreamWorker.call('makeStream', { name: 'es-pt', objects: SMALL, events: 10_000 });
  const rate = 2_000;
  const count = 2_000;
  let run = 0;
  const watchLatency = async (side: 'direct' | 'poolview') => {
    const runId = `pt${run++}`;
    const headers = { ...KUBECTL, 'x-bench-replay': `paced:es-pt:${runId}:${rate}:${count}` };
    const recv = await client.call<number[]>('watchTimes', { url: `${base(side)}${ES_PATH}?watch=true`, headers });
    const sent = await upstreamWorker.call<number[]>('sendTimes', { runId });
    if (recv.length !== count) throw new Error(`watch delivered ${recv.length} of ${count} events`);
    const lat = recv.map((t, i) => t - sent[i]);
    return { p50: percentile(lat, 50), p99: percentile(lat, 99) };
  };
  const wl = await paired(REPS, watchLatency);
  const d50 = median(wl.direct.map((x) => x.p50));
  const v50 = median(wl.poolview.map((x) => x.p50));
  const f = add({
    id: 'pt-watch-latency', section: 'pass-through', name: `pass-through watch event latency (p50, ${rate}/s)`, upstream: 'replay',
    unit: 'ms', value: v50, baselineName: 'direct', baseline: d50, ratio: v50 / d50, budget: { op: '<=', limit: 1.1, text: '≤ 1.10×' },
    details: { p99Direct: median(wl.direct.map((x) => x.p99)), p99Poolview: median(wl.poolview.map((x) => x.p99)), addedMs: v50 - d50, events: count, rate, note: 'an untargeted watch is streamed through as the upstream sent it (not parsed)' },
  });
  await profileMiss(f, () => watchLatency('poolview'));

  const watchRate = async (side: 'direct' | 'poolview') => {
    const x = await client.call<{ elapsedMs: number; events: number[] }>('watchBurst', { url: `${base(side)}${ES_PATH}?watch=true`, headers: { ...KUBECTL, 'x-bench-replay': 'burst:es-pt' }, watchers: 1 });
    if (x.events[0] !== 10_000) throw new Error(`watch delivered ${x.events[0]} of 10000 events`);
    return (x.events[0] * 1000) / x.elapsedMs;
  };
  const wr = await paired(REPS, watchRate);
  const g = add({
    id: 'pt-watch-throughput', section: 'pass-through', name: 'pass-through watch event throughput (1 watch)', upstream: 'replay',
    unit: 'events/s', value: median(wr.poolview), baselineName: 'direct', baseline: median(wr.direct), ratio: median(wr.direct) / median(wr.poolview),
    budget: { op: '<=', limit: 1.1, text: '≤ 1.10× (time/event)' }, details: { events: 10_000, repsDirect: wr.direct, repsPoolview: wr.poolview },
  });
  await profileMiss(g, () => watchRate('poolview'));
  await upstreamWorker.call('dropStream', { name: 'es-pt' });
  await stopPv();
}


// ---------------------------------------------------------------- pass-through, real apiserver

/** The directory of cached Kubernetes binaries (test/cluster/build.sh --cached-only), or undefined; never builds. */
function cachedKubernetesBinaries(): string | undefined {
  if (process.env.POOLVIEW_K8S_BIN) return process.env.POOLVIEW_K8S_BIN;
  const r = spawnSync('bash', [join(ROOT, 'test', 'cluster', 'build.sh'), '--cached-only'], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  return r.stdout.trim().split('\n').pop() || undefined;
}

/** POSTs every object to the apiserver, `concurrency` at a time (as admin). */
async function createObjects(cluster: Cluster, ca: string, objects: Array<{ path: string; body: unknown }>, concurrency = 24): Promise<void> {
  const agent = new UndiciAgent({ connect: { ca }, connections: concurrency });
  let next = 0;
  try {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < objects.length) {
          const { path, body } = objects[next++];
          const res = await undiciRequest(new URL(path, cluster.server), {
            method: 'POST',
            dispatcher: agent,
            headers: { authorization: `Bearer ${cluster.tokens.admin}`, 'content-type': 'application/json', accept: 'application/json' },
            body: JSON.stringify(body),
          });
          const text = await res.body.text();
          if (res.statusCode !== 201) throw new Error(`POST ${path}: ${res.statusCode} ${text.slice(0, 300)}`);
        }
      }),
    );
  } finally {
    await agent.close();
  }
}

/**
 * The pass-through figures against a real kube-apiserver + etcd: kubectl's requests straight to the
 * apiserver (HTTPS, admin token) vs through poolview's plain HTTP port (poolview forwards the
 * client's Authorization and talks HTTPS to the apiserver as the e2e `poolview` identity).
 */
async function passThroughReal(): Promise<void> {
  const binDir = cachedKubernetesBinaries();
  if (!binDir) {
    skipped.push('passthrough-real: no cached Kubernetes binaries; run test/cluster/build.sh');
    log('passthrough-real skipped: no cached Kubernetes binaries; run test/cluster/build.sh');
    return;
  }
  const slices = QUICK ? SMALL : 1_000;
  log(`pass-through, real apiserver: GET, LIST ${slices} EndpointSlices (untargeted kubectl; upstream = kube-apiserver + etcd from ${binDir})`);
  const { startCluster } = await import('../test/support/cluster.js');
  let t = now();
  const cluster = await startCluster({ binDir });
  try {
    const ca = readFileSync(cluster.caFile, 'utf8');
    const { body: version } = await cluster.request<{ gitVersion: string }>('GET', '/version');
    log(`  control plane ${version.gitVersion} ready in ${((now() - t) / 1000).toFixed(1)} s at ${cluster.server}`);

    // n1 in pool-0 is poolview's scope; poolview's sources sync while the objects are created.
    await cluster.createNode(gen.NODE_NAME, { internalIP: '192.168.0.1', pool: 'pool-0' });
    await cluster.createNodePool('pool-0', { nodes: [gen.NODE_NAME] });
    const auth = { authorization: `Bearer ${cluster.tokens.admin}` };
    const pvStarted = now();
    const p = (pv = await startPoolview({ nodeName: gen.NODE_NAME, port: 0, healthPort: 0, logLevel: 'error', kubeconfig: cluster.kubeconfig('poolview') }));
    const synced = waitSynced(p.url, 120_000, auth).then(
      () => void log(`  poolview synced in ${((now() - pvStarted) / 1000).toFixed(1)} s`),
      (err: Error) => err, // handled below, once the objects are created
    );

    // The objects: namespaces, a Service in each, the EndpointSlices.
    t = now();
    const namespaces = Math.min(gen.NAMESPACES, slices);
    await createObjects(cluster, ca, Array.from({ length: namespaces }, (_, i) => ({ path: '/api/v1/namespaces', body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: gen.namespaceOf(i) } } })));
    await createObjects(
      cluster,
      ca,
      Array.from({ length: namespaces }, (_, i) => {
        const svc = gen.service(i);
        delete svc.spec.clusterIP; // allocated by the apiserver (the bench's addresses may be taken)
        delete svc.spec.clusterIPs;
        delete svc.status;
        return { path: `/api/v1/namespaces/${gen.namespaceOf(i)}/services`, body: svc };
      }),
    );
    await createObjects(cluster, ca, Array.from({ length: slices }, (_, i) => ({ path: `/apis/discovery.k8s.io/v1/namespaces/${gen.namespaceOf(i)}/endpointslices`, body: gen.endpointSlice(i) })));
    log(`  created ${namespaces} namespaces, ${namespaces} Services, ${slices} EndpointSlices in ${((now() - t) / 1000).toFixed(1)} s`);

    const notSynced = await synced;
    if (notSynced) throw notSynced;

    const headers = { ...KUBECTL, ...auth };
    const target = (side: 'direct' | 'poolview', path: string) => (side === 'direct' ? { url: cluster.server + path, ca } : { url: p.url + path });
    const requests: Array<{ id: string; name: string; path: string; seq: number; conc: number; total: number }> = [
      { id: 'ptr-get', name: 'GET EndpointSlice', path: `/apis/discovery.k8s.io/v1/namespaces/${gen.namespaceOf(1)}/endpointslices/${gen.serviceName(1)}-abcde`, seq: QUICK ? 100 : 150, conc: 8, total: QUICK ? 400 : 600 },
      { id: 'ptr-get-svc', name: 'GET Service', path: `/api/v1/namespaces/${gen.namespaceOf(1)}/services/${gen.serviceName(1)}`, seq: QUICK ? 100 : 150, conc: 8, total: QUICK ? 400 : 600 },
      { id: `ptr-list-${slices}`, name: `LIST ${slices} EndpointSlices`, path: ES_PATH, seq: QUICK ? 8 : 12, conc: 4, total: QUICK ? 16 : 24 },
    ];

    // poolview answers with the apiserver's bytes. A LIST's resourceVersion moves on with the
    // apiserver's own writes (its leases), so a LIST is compared with the direct reads around it.
    for (const r of requests) {
      const body = async (side: 'direct' | 'poolview') => {
        const x = await client.call<{ status: number; bytes: ArrayBuffer }>('fetchBody', { ...target(side, r.path), headers });
        if (x.status !== 200) throw new Error(`${side} GET ${r.path}: ${x.status} ${Buffer.from(x.bytes).toString('utf8').slice(0, 300)}`);
        return Buffer.from(x.bytes);
      };
      let equal = false;
      for (let attempt = 0; attempt < 5 && !equal; attempt++) {
        const before = await body('direct');
        const via = await body('poolview');
        const after = await body('direct');
        equal = via.equals(before) || via.equals(after);
      }
      if (!equal) throw new Error(`poolview's answer to ${r.path} differs from the apiserver's (bytes)`);
    }
    log('  poolview\'s answers equal the apiserver\'s (bytes)');

    for (const r of requests) {
      const latency = (side: 'direct' | 'poolview') =>
        client.call<{ latencies: number[]; bytes: number }>('fetchMany', { ...target(side, r.path), headers, count: r.seq, concurrency: 1 }).then((x) => ({ ms: median(x.latencies), bytes: x.bytes / r.seq }));
      const lat = await paired(REPS, latency);
      const d = median(lat.direct.map((x) => x.ms));
      const v = median(lat.poolview.map((x) => x.ms));
      const f = add({
        id: `${r.id}-latency`, section: 'pass-through (real apiserver)', name: `pass-through ${r.name} latency (p50), real apiserver`, upstream: 'apiserver',
        unit: 'ms', value: v, baselineName: 'direct', baseline: d, ratio: v / d, budget: { op: '<=', limit: 1.1, text: '≤ 1.10×' },
        details: {
          addedMs: v - d, bytes: lat.poolview[0].bytes, directBytes: lat.direct[0].bytes, sequentialRequests: r.seq, repsDirect: lat.direct.map((x) => x.ms), repsPoolview: lat.poolview.map((x) => x.ms),
          kubernetes: version.gitVersion, client: 'direct: HTTPS to kube-apiserver; poolview: plain HTTP to poolview, HTTPS from poolview to kube-apiserver (HTTP/1.1, admin bearer token)',
        },
      });
      await profileMiss(f, () => latency('poolview'));

      const throughput = (side: 'direct' | 'poolview') =>
        client.call<{ elapsedMs: number }>('fetchMany', { ...target(side, r.path), headers, count: r.total, concurrency: r.conc }).then((x) => (r.total * 1000) / x.elapsedMs);
      const thr = await paired(REPS, throughput);
      const dr = median(thr.direct);
      const vr = median(thr.poolview);
      const g = add({
        id: `${r.id}-throughput`, section: 'pass-through (real apiserver)', name: `pass-through ${r.name} throughput (${r.conc} in flight), real apiserver`, upstream: 'apiserver',
        unit: 'req/s', value: vr, baselineName: 'direct', baseline: dr, ratio: dr / vr, budget: { op: '<=', limit: 1.1, text: '≤ 1.10× (time/req)' },
        details: {
          addedMsPerRequest: 1000 / vr - 1000 / dr, requests: r.total, concurrency: r.conc, repsDirect: thr.direct, repsPoolview: thr.poolview, kubernetes: version.gitVersion,
          note: 'poolview, the apiserver and etcd share this machine\'s cores: with requests in flight, poolview\'s CPU time is taken from the apiserver\'s',
        },
      });
      await profileMiss(g, () => throughput('poolview'));
    }
    await kubeletMix(cluster, ca, auth, target, version.gitVersion);
  } finally {
    await stopPv();
    t = now();
    await cluster.stop();
    log(`  control plane stopped in ${((now() - t) / 1000).toFixed(1)} s`);
  }
}

const KUBELET = { 'user-agent': 'kubelet/v1.35.4 (linux/amd64) kubernetes/6c6cd7e', accept: 'application/json' };
const KUBELET_PODS = QUICK ? 10 : 30;

/**
 * The kubelet's steady traffic through poolview vs direct, on the real apiserver: GET a Pod and LIST
 * the node's Pods (filtered by serviceenvupdater: they go through the view engine), PATCH the Node's
 * status and PUT its Lease (passed through). One round = the four in a row.
 */
async function kubeletMix(cluster: Cluster, ca: string, auth: Record<string, string>, target: (side: 'direct' | 'poolview', path: string) => { url: string; ca?: string }, kubernetes: string): Promise<void> {
  const ns = gen.namespaceOf(0);
  const env = [{ name: 'KUBERNETES_SERVICE_HOST', value: '10.96.0.1' }, { name: 'KUBERNETES_SERVICE_PORT', value: '443' }];
  const pods = Array.from({ length: KUBELET_PODS }, (_, i) => ({
    path: `/api/v1/namespaces/${ns}/pods`,
    body: { apiVersion: 'v1', kind: 'Pod', metadata: { name: `kubelet-${i}`, namespace: ns, labels: { app: 'bench' } }, spec: { nodeName: gen.NODE_NAME, automountServiceAccountToken: false, containers: [{ name: 'app', image: 'busybox', env }] } },
  }));
  // No controller-manager: the ServiceAccount admission wants the namespace's default account.
  await createObjects(cluster, ca, [{ path: `/api/v1/namespaces/${ns}/serviceaccounts`, body: { metadata: { name: 'default' } } }]);
  await createObjects(cluster, ca, pods);
  const lease = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${gen.NODE_NAME}`;
  await createObjects(cluster, ca, [{ path: '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases', body: { metadata: { name: gen.NODE_NAME }, spec: { holderIdentity: gen.NODE_NAME, leaseDurationSeconds: 40 } } }]);
  const rounds = QUICK ? 40 : 100;
  const mix = async (side: 'direct' | 'poolview') => {
    const { url, ca: sideCa } = target(side, '');
    const x = await client.call<{ latencies: Record<string, number[]>; elapsedMs: number }>('kubeletMix', {
      base: url, ca: sideCa, headers: { ...KUBELET, ...auth }, rounds, pods: pods.map((p) => `${p.path}/${p.body.metadata.name}`), node: gen.NODE_NAME, lease,
    });
    return { roundMs: x.elapsedMs / rounds, p50: Object.fromEntries(Object.entries(x.latencies).map(([k, v]) => [k, median(v)])) };
  };
  const runs = await paired(REPS, mix);
  const d = median(runs.direct.map((r) => r.roundMs));
  const v = median(runs.poolview.map((r) => r.roundMs));
  const perKind = (rs: Array<{ p50: Record<string, number> }>) => Object.fromEntries(Object.keys(rs[0].p50).map((k) => [k, median(rs.map((r) => r.p50[k]))]));
  const f = add({
    id: 'ptr-kubelet-mix', section: 'pass-through (real apiserver)', name: 'kubelet mix per round (GET pod, LIST node\'s pods, PATCH node status, PUT lease), real apiserver', upstream: 'apiserver',
    unit: 'ms', value: v, baselineName: 'direct', baseline: d, ratio: v / d, budget: { op: '<=', limit: 1.1, text: '≤ 1.10×' },
    details: {
      rounds, pods: KUBELET_PODS, p50Direct: perKind(runs.direct), p50Poolview: perKind(runs.poolview), repsDirect: runs.direct.map((r) => r.roundMs), repsPoolview: runs.poolview.map((r) => r.roundMs), kubernetes,
      note: 'kubelet User-Agent, JSON (the real kubelet asks for protobuf; poolview answers filtered resources in JSON); pod reads go through the view engine (serviceenvupdater), node status and lease writes pass through',
    },
  });
  await profileMiss(f, () => mix('poolview'));
}

// ---------------------------------------------------------------- filtered LIST

const scaling: Record<string, Record<number, number>> = { listEs: {}, listEsFloor: {}, listSvc: {}, listSvcFloor: {}, watch: {}, watchFloor: {}, rss: {}, heap: {} };

async function filteredList(size: number, p: RunningPoolview): Promise<void> {
  log(`filtered LIST at ${size} (kube-proxy; upstream = replay of the fake's recorded LIST)`);
  for (const kind of ['es', 'svc'] as const) {
    const key = `${kind}-list-${size}`;
    const body = await textOf('body', { key });
    const floorOnce = listFloor(body);
    const path = kind === 'es' ? ES_PATH : SVC_PATH;
    const seq = size <= 1_000 ? 10 : size <= 10_000 ? 3 : 1;
    const measure = (side: 'direct' | 'poolview') =>
      client
        .call<{ latencies: number[]; bytes: number }>('fetchMany', {
          url: (side === 'direct' ? urls.front : p.url) + path,
          headers: { ...(side === 'direct' ? KUBECTL : KUBE_PROXY), 'x-bench-replay': `body:${key}` },
          count: seq,
          concurrency: 1,
        })
        .then((x) => ({ ms: median(x.latencies), bytes: x.bytes / seq }));
    const runs = await paired(REPS, measure, () => ({ ms: floorOnce(), bytes: 0 }));
    const floor = { ms: median(runs.floor.map((x) => x.ms)), samples: runs.floor.map((x) => x.ms) };
    const v = median(runs.poolview.map((x) => x.ms));
    const d = median(runs.direct.map((x) => x.ms));
    const filtered = runs.poolview[0].bytes;
    if (filtered >= body.length) throw new Error(`filtered LIST of ${key} was not filtered (${filtered} >= ${body.length} bytes)`);
    const what = kind === 'es' ? `${size} EndpointSlices (servicetopology)` : `${size} Services (nodeportisolation)`;
    const f = add({
      id: `list-${kind}-${size}`, section: 'filtered LIST', name: `filtered LIST ${what}`, upstream: 'replay',
      unit: 'ms', value: v, baselineName: 'parse+stringify', baseline: floor.ms, ratio: v / floor.ms,
      budget: size === MAIN ? { op: '<=', limit: 1.5, text: '≤ 1.5×' } : null,
      details: { directMs: d, upstreamBytes: body.length, filteredBytes: filtered, floorSamples: floor.samples, reps: runs.poolview.map((x) => x.ms) },
    });
    scaling[kind === 'es' ? 'listEs' : 'listSvc'][size] = v;
    scaling[kind === 'es' ? 'listEsFloor' : 'listSvcFloor'][size] = floor.ms;
    await profileMiss(f, () => measure('poolview'));
  }
}

// ---------------------------------------------------------------- filtered WATCH

async function filteredWatch(size: number, p: RunningPoolview, watcherCounts: number[]): Promise<void> {
  const extra = 5_000;
  const events = size + extra;
  const name = `es-w-${size}`;
  log(`filtered WATCH at ${size} objects (kube-proxy; upstream = replay stream of ${events} events per watch)`);
  const stream = await upstreamWorker.call<{ bytes: number }>('makeStream', { name, objects: size, events });
  const floorOnce = eventFloor(await textOf('streamText', { name }));
  for (const watchers of watcherCounts) {
    const measure = async () => {
      global.gc?.();
      const cpu0 = await threadCpuMs();
      const x = await client.call<{ elapsedMs: number; events: number[]; bytes: number }>('watchBurst', {
        url: `${p.url}${ES_PATH}?watch=true&allowWatchBookmarks=true`,
        headers: { ...KUBE_PROXY, 'x-bench-replay': `burst:${name}` },
        watchers,
      });
      const cpu = (await threadCpuMs()) - cpu0;
      const delivered = x.events.reduce((a, b) => a + b, 0);
      if (delivered !== events * watchers) throw new Error(`filtered watch delivered ${delivered} of ${events * watchers} events`);
      if (x.bytes >= stream.bytes * watchers) throw new Error(`filtered watch was not filtered (${x.bytes} >= ${stream.bytes * watchers} bytes)`);
      return { rate: (delivered * 1000) / x.elapsedMs, cpuPer1k: cpu / (delivered / 1000), filteredBytesShare: x.bytes / (stream.bytes * watchers) };
    };
    await measure(); // warm-up
    const runs: Array<{ rate: number; cpuPer1k: number; filteredBytesShare: number }> = [];
    const floorSamples: number[] = [];
    for (let i = 0; i < REPS; i++) {
      floorSamples.push(floorOnce()); // interleaved, as in paired()
      runs.push(await measure());
    }
    const floor = { rate: median(floorSamples), samples: floorSamples };
    const rate = median(runs.map((r) => r.rate));
    const f = add({
      id: `watch-${size}-${watchers}`, section: 'filtered WATCH', name: `filtered WATCH ${watchers} watcher${watchers > 1 ? 's' : ''}, ${size} EndpointSlices`, upstream: 'replay',
      unit: 'events/s', value: rate, baselineName: 'parse+stringify', baseline: floor.rate, ratio: rate / floor.rate,
      budget: size === MAIN ? { op: '>=', limit: 0.5, text: '≥ 0.5×' } : null,
      details: { cpuMsPer1kEvents: median(runs.map((r) => r.cpuPer1k)), floorCpuMsPer1kEvents: 1_000_000 / floor.rate, eventsPerWatch: events, reps: runs, floorSamples: floor.samples },
    });
    if (watchers === 1) {
      scaling.watch[size] = rate;
      scaling.watchFloor[size] = floor.rate;
    }
    await profileMiss(f, measure);
  }
  await upstreamWorker.call('dropStream', { name });
}

// ---------------------------------------------------------------- scope change

/** How long poolview's views held scope-change transitions for a revision, and how many fell back (its metrics so far). */
async function scopeChangeWaits(registry: RunningPoolview['registry']): Promise<{ fallbacks: number; heldSeconds: number; held: number }> {
  const sum = async (name: string, suffix = '') =>
    ((await registry.getSingleMetric(name)?.get())?.values ?? []).filter((v) => !suffix || (v as { metricName?: string }).metricName?.endsWith(suffix)).reduce((n, v) => n + v.value, 0);
  return {
    fallbacks: await sum('poolview_scope_change_fallbacks_total'),
    heldSeconds: await sum('poolview_scope_change_held_seconds', '_sum'),
    held: await sum('poolview_scope_change_held_seconds', '_count'),
  };
}

async function scopeChange(size: number): Promise<void> {
  log(`scope change at ${size} objects: NodePool membership → events at every watch (upstream = fake apiserver, no replay)`);
  const p = await startPv(urls.fake);
  const keys: string[] = [];
  for (let i = 0; i < size; i += gen.MOVER_EVERY) keys.push(`${gen.namespaceOf(i)}/${gen.serviceName(i)}-abcde`);
  const poolKeys = ['undefined/pool-0'];
  // The baseline: the same NodePool event at a client watching the fake directly.
  await client.call('openWatches', { base: urls.fake, groups: [{ path: '/apis/apps.openyurt.io/v1beta2/nodepools', n: 1 }], headers: KUBECTL });
  let joined = false;
  let open = 0;
  for (const n of SCOPE_WATCHES) {
    // Seeding 100 views of 10,000 slices takes poolview about 100 s on 2 cores.
    if (n >= 100 && elapsed() > SOFT_DEADLINE_MS - 150_000) {
      skipped.push(`scope change with ${n} watches (would pass 10 minutes)`);
      break;
    }
    const t = now();
    await client.call('openWatches', { base: p.url, groups: [{ path: ES_PATH, n: n - open }], headers: KUBE_PROXY });
    open = n;
    const seeded = now() - t;
    log(`  ${n} watch${n > 1 ? 'es' : ''} open (${(seeded / 1000).toFixed(1)} s to seed)`);
    const changes = n >= 100 ? 5 : 20;
    const samples: number[] = [];
    const firsts: number[] = [];
    const direct: number[] = [];
    const perChangeP99: number[] = [];
    let incomplete = 0;
    const change = async (record = true) => {
      await client.call('arm', { keysByPath: { [ES_PATH]: keys, '/apis/apps.openyurt.io/v1beta2/nodepools': poolKeys } });
      joined = !joined;
      const { t0 } = await upstreamWorker.call<{ t0: number }>('movePool', { join: joined });
      const seen = await client.call<Array<{ path: string; first: number | null; done: number | null; missing: number }>>('collect', { timeoutMs: 30_000 });
      if (record) {
        const lat: number[] = [];
        for (const w of seen) {
          if (w.path !== ES_PATH) {
            if (w.done !== null) direct.push(w.done - t0);
            continue;
          }
          if (w.done === null) incomplete++;
          else lat.push(w.done - t0);
          if (w.first !== null) firsts.push(w.first - t0);
        }
        samples.push(...lat);
        perChangeP99.push(percentile(lat, 99));
      }
      await sleep(30);
    };
    if (n < 100) await change(false); // warm-up (the 100-watch run comes after two warm runs)
    const waitsBefore = await scopeChangeWaits(p.registry);
    for (let i = 0; i < changes; i++) await change();
    const waitsAfter = await scopeChangeWaits(p.registry);
    const held = waitsAfter.held - waitsBefore.held;
    const p99 = percentile(samples, 99);
    const f = add({
      id: `scope-${n}`, section: 'scope change', name: `scope change → events at ${n} watch${n > 1 ? 'es' : ''} (p99), ${size} EndpointSlices`, upstream: 'fake',
      unit: 'ms', value: p99, baselineName: 'direct NodePool watch p99', baseline: percentile(direct, 99), ratio: null,
      budget: { op: '<=', limit: 50, text: 'p99 ≤ 50 ms' }, judged: incomplete > 0 ? Infinity : p99,
      details: { seedSeconds: seeded / 1000, p50: percentile(samples, 50), p99, firstEventP50: percentile(firsts, 50), firstEventP99: percentile(firsts, 99), directP50: percentile(direct, 50), medianPerChangeP99: median(perChangeP99), changes, samples: samples.length, incomplete, affectedSlicesPerChange: keys.length,
        // Views wait for an upstream revision past the change before sending it (README, "Scope changes").
        transitionsHeldMeanMs: held ? ((waitsAfter.heldSeconds - waitsBefore.heldSeconds) / held) * 1000 : null, fallbacks: waitsAfter.fallbacks - waitsBefore.fallbacks },
    });
    await profileMiss(f, async () => {
      for (let i = 0; i < (n >= 100 ? 1 : 4); i++) await change(false);
    });
  }
  await client.call('closeWatches');
  await stopPv();
}

// ---------------------------------------------------------------- memory (separate process)

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function vmRssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

async function heapUsedBytes(healthUrl: string): Promise<number> {
  const text = await (await fetch(`${healthUrl}/metrics`)).text();
  const m = /^nodejs_heap_size_used_bytes(?:\{[^}]*\})? (\S+)/m.exec(text);
  return m ? Number(m[1]) : NaN;
}

/** The environment the image (Dockerfile) runs poolview with: glibc returns freed large blocks to the OS. */
const IMAGE_ENV = { MALLOC_MMAP_THRESHOLD_: '65536' };
/** Memory is read this long after the watches opened (and 2 s after, as the early figure). */
const SETTLE_MS = 25_000;

async function memory(size: number, withProfile = false, env: Record<string, string> = IMAGE_ENV): Promise<{ rss: number; heap: number; rssNoWatches: number; rssEarly: number; child?: { cpu: string; heap: string } }> {
  const dir = mkdtempSync(join(tmpdir(), 'poolview-bench-'));
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    `apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: ${urls.fake}\nusers:\n- name: bench\n  user: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: bench\ncurrent-context: fake\n`,
  );
  const port = await freePort();
  const healthPort = await freePort();
  const profDir = join(dir, 'prof');
  // Profiled: CPU with --cpu-prof (written at exit); the live heap by allocation site with the
  // sampling heap profiler, read over the inspector while the 10 watches are open.
  const flags = withProfile ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`, '--inspect-brk=127.0.0.1:0'] : [];
  const child: ChildProcess = spawn(
    process.execPath,
    [...flags, join(ROOT, 'bin', 'poolview.js'), '--kubeconfig', kubeconfig, '--node-name', gen.NODE_NAME, '--port', String(port), '--health-port', String(healthPort), '--log-level', 'warn'],
    { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let inspector: Inspector | undefined;
  if (withProfile) {
    const deadline = now() + 10_000;
    let ws: string | undefined;
    while (!(ws = /Debugger listening on (ws:\/\/\S+)/.exec(stderr)?.[1]) && now() < deadline) await sleep(20);
    if (!ws) throw new Error(`no inspector URL from the poolview process: ${stderr}`);
    inspector = await Inspector.connect(ws);
    await inspector.send('HeapProfiler.startSampling', { samplingInterval: 16_384 });
    await inspector.send('Runtime.runIfWaitingForDebugger');
  }
  const url = `http://127.0.0.1:${port}`;
  const healthUrl = `http://127.0.0.1:${healthPort}`;
  try {
    const deadline = now() + 120_000;
    for (;;) {
      const ok = await fetch(`${healthUrl}/readyz`).then((r) => r.status === 200, () => false);
      if (ok) break;
      if (child.exitCode !== null || now() > deadline) throw new Error(`poolview process not ready (exit ${child.exitCode}): ${stderr}`);
      await sleep(200);
    }
    await waitSynced(url);
    await sleep(1_000);
    const rssNoWatches = vmRssBytes(child.pid!);
    // 10 open watches: five node agents watching Services and EndpointSlices, each after its LIST.
    await client.call('openWatches', { base: url, groups: [{ path: ES_PATH, n: 5 }, { path: SVC_PATH, n: 5 }], headers: KUBE_PROXY });
    const opened = now();
    const sample = async () => {
      const rss: number[] = [];
      const heap: number[] = [];
      for (let i = 0; i < 5; i++) {
        rss.push(vmRssBytes(child.pid!));
        heap.push(await heapUsedBytes(healthUrl));
        await sleep(300);
      }
      return { rss: median(rss), heap: median(heap) };
    };
    await sleep(2_000);
    const early = await sample();
    // Settled: V8 gives back the pages of the lists' garbage some seconds after the burst.
    await sleep(Math.max(0, opened + SETTLE_MS - now()));
    const settled = await sample();
    const result: { rss: number; heap: number; rssNoWatches: number; rssEarly: number; child?: { cpu: string; heap: string } } = { ...settled, rssNoWatches, rssEarly: early.rss };
    const out: { cpu: string; heap: string } = { cpu: '', heap: '' };
    if (inspector) {
      const { profile } = await inspector.send<{ profile: object }>('HeapProfiler.getSamplingProfile');
      writeFileSync((out.heap = join(RESULTS, `${stamp}-memory-${size}.heapprofile`)), JSON.stringify(profile));
      inspector.close();
    }
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(15_000)]);
    await client.call('closeWatches');
    if (withProfile) {
      const cpu = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
      if (cpu) renameSync(join(profDir, cpu), (out.cpu = join(RESULTS, `${stamp}-memory-${size}.cpuprofile`)));
      result.child = out;
    }
    return result;
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

async function memoryFigure(size: number): Promise<void> {
  log(`memory at ${size} Services + ${size} EndpointSlices, 10 open watches (separate poolview process; upstream = fake apiserver)`);
  const m = await memory(size);
  // The same without the image's malloc setting (a plain `node bin/poolview.js`).
  const defaultMalloc = size === MAIN ? await memory(size, false, {}) : undefined;
  const mib = (b: number) => b / 1048576;
  scaling.rss[size] = mib(m.rss);
  scaling.heap[size] = mib(m.heap);
  const f = add({
    id: `memory-${size}`, section: 'memory', name: `memory RSS, ${size} Services + ${size} EndpointSlices, 10 watches`, upstream: 'fake',
    unit: 'MiB', value: mib(m.rss), baselineName: 'same, 0 watches', baseline: mib(m.rssNoWatches), ratio: null,
    budget: size === MAIN ? { op: '<=', limit: 100, text: '≤ 100 MiB RSS' } : null, judged: mib(m.rss),
    details: {
      heapUsedMiB: mib(m.heap), rssNoWatchesMiB: mib(m.rssNoWatches), rssEarlyMiB: mib(m.rssEarly), settleSeconds: SETTLE_MS / 1000, env: IMAGE_ENV, endpoints: size * gen.ENDPOINTS_PER_SLICE,
      ...(defaultMalloc ? { rssDefaultMallocMiB: mib(defaultMalloc.rss) } : {}),
    },
  });
  if (f.met === false && PROFILE) {
    if (overBudget()) skipped.push(`profiles of "${f.name}" (time)`);
    else {
      const again = await memory(size, true);
      if (again.child?.cpu) {
        const cpu = JSON.parse(readFileSync(again.child.cpu, 'utf8'));
        f.profile = { file: again.child.cpu.slice(ROOT.length), top: topSelfTime(cpu, ROOT) };
      }
      if (again.child?.heap && f.profile) {
        const heap = JSON.parse(readFileSync(again.child.heap, 'utf8'));
        f.profile.heap = { file: again.child.heap.slice(ROOT.length), top: topSelfSize(heap, ROOT) };
      }
      log(`  profiled -> ${f.profile?.file ?? 'no cpu profile'}, ${f.profile?.heap?.file ?? 'no heap profile'}`);
    }
  }
}

// ---------------------------------------------------------------- run

async function section(name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    const msg = `${name}: ${(err as Error).stack ?? err}`;
    errors.push(msg);
    log(`ERROR ${msg}`);
    await client.call('closeWatches').catch(() => {});
    await stopPv().catch(() => {});
  }
}

mkdirSync(RESULTS, { recursive: true });
// First, on a machine not yet loaded by the fake cluster's writes; its time counts towards the soft
// deadline like every other section's.
if (want('passthrough-real')) await section('pass-through (real apiserver)', passThroughReal);
const FAKE_SECTIONS = ['passthrough', 'list', 'watch', 'scope', 'memory'];
if (FAKE_SECTIONS.some((s) => want(s))) await upstreamWorker.call('seedCluster');
for (const size of FAKE_SECTIONS.some((s) => want(s)) ? SIZES : []) {
  const grown = await upstreamWorker.call<{ ms: number; rv: number }>('grow', { n: size });
  const rec = await upstreamWorker.call<{ esBytes: number; svcBytes: number }>('record', { suffix: String(size) });
  log(`cluster at ${size} Services + ${size} EndpointSlices (${(grown.ms / 1000).toFixed(1)} s to create; LISTs ${(rec.esBytes / 1048576).toFixed(1)} + ${(rec.svcBytes / 1048576).toFixed(1)} MiB)`);
  if (size === MAIN && want('passthrough')) await section('pass-through', passThrough);
  if (size === LARGE && overBudget() && (want('list') || want('watch'))) skipped.push(`filtered LIST/WATCH at ${size} objects (would pass 10 minutes)`);
  else if (want('list') || want('watch')) {
    await section(`filtered at ${size}`, async () => {
      const p = await startPv(urls.front);
      if (want('list')) await section(`filtered LIST at ${size}`, () => filteredList(size, p));
      if (want('watch')) await section(`filtered WATCH at ${size}`, () => filteredWatch(size, p, size === MAIN ? [1, 10] : [1]));
      await stopPv();
    });
  }
  if (size === MAIN && want('scope')) await section('scope change', () => scopeChange(size));
  if (want('memory')) {
    if (size === LARGE && overBudget()) skipped.push(`memory at ${size} objects (would pass 10 minutes)`);
    else await section(`memory at ${size}`, () => memoryFigure(size));
  }
}
await upstreamWorker.call('close').catch(() => {});
await Promise.all([upstreamWorker.terminate(), client.terminate()]);

// ---------------------------------------------------------------- report

function growth(series: Record<number, number>, perObject: (v: number, size: number) => number): { perObject: Record<number, number>; ratio: number | null; linear: boolean | null } {
  const sizes = Object.keys(series).map(Number).sort((a, b) => a - b);
  const per: Record<number, number> = {};
  for (const s of sizes) per[s] = perObject(series[s], s);
  if (sizes.length < 2) return { perObject: per, ratio: null, linear: null };
  const ratio = per[sizes[sizes.length - 1]] / per[sizes[0]];
  return { perObject: per, ratio, linear: ratio <= 1.5 };
}
const marginal = (series: Record<number, number>) => {
  const sizes = Object.keys(series).map(Number).sort((a, b) => a - b);
  const per: Record<number, number> = {};
  for (let i = 1; i < sizes.length; i++) per[sizes[i]] = ((series[sizes[i]] - series[sizes[i - 1]]) * 1024) / (sizes[i] - sizes[i - 1]); // KiB per object
  const ks = Object.keys(per).map(Number);
  const ratio = ks.length >= 2 ? per[ks[ks.length - 1]] / per[ks[0]] : null;
  return { perObject: per, ratio, linear: ratio === null ? null : ratio <= 1.5 };
};
const scalingReport = {
  'filtered LIST EndpointSlices, µs per object': { poolview: growth(scaling.listEs, (v, s) => (v * 1000) / s), floor: growth(scaling.listEsFloor, (v, s) => (v * 1000) / s) },
  'filtered LIST Services, µs per object': { poolview: growth(scaling.listSvc, (v, s) => (v * 1000) / s), floor: growth(scaling.listSvcFloor, (v, s) => (v * 1000) / s) },
  'filtered WATCH (1 watcher), µs per event by view size': { poolview: growth(scaling.watch, (v) => 1e6 / v), floor: growth(scaling.watchFloor, (v) => 1e6 / v) },
  'memory RSS, KiB per added object pair (marginal)': { poolview: marginal(scaling.rss) },
  'memory heap used, KiB per added object pair (marginal)': { poolview: marginal(scaling.heap) },
};

const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? 'unknown';
const machine = { cores: cpus().length, model: cpuModel, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, platform: `${process.platform}/${process.arch}`, loadAverageAtStart: loadAtStart, loadAverageAtEnd: loadavg().map((l) => Math.round(l * 100) / 100) };
const durationS = Math.round(elapsed() / 1000);
const result = { date: new Date().toISOString(), machine, quick: QUICK, reps: REPS, sizes: SIZES, durationSeconds: durationS, figures, scaling: scalingReport, skipped, errors };

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]) => '| ' + r.map((c, i) => c.padEnd(widths[i])).join(' | ') + ' |';
  return [line(rows[0]), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...rows.slice(1).map(line)].join('\n');
}
const rows = [['Figure', 'Upstream', 'poolview', 'Baseline', 'Ratio', 'Budget', 'Met']];
for (const f of figures) {
  rows.push([
    f.name,
    f.upstream,
    `${fmt(f.value)} ${f.unit}`,
    f.baseline === null ? '-' : `${fmt(f.baseline)} ${f.unit} (${f.baselineName})`,
    f.ratio === null ? '-' : `${f.ratio.toFixed(2)}×`,
    f.budget?.text ?? '(scaling)',
    f.met === null ? '-' : f.met ? 'met' : 'MISSED',
  ]);
}
const scaleRows = [['Growth', 'per-object cost (objects: cost)', 'largest/smallest', 'Linear?']];
for (const [name, s] of Object.entries(scalingReport)) {
  for (const [who, g] of Object.entries(s)) {
    const sizes = Object.keys(g.perObject).map(Number);
    scaleRows.push([`${name} (${who})`, sizes.map((k) => `${k}: ${fmt(g.perObject[k])}`).join(', ') || '-', g.ratio === null ? '-' : `${g.ratio.toFixed(2)}×`, g.linear === null ? '-' : g.linear ? 'yes' : 'NO (super-linear)']);
  }
}

const out: string[] = [];
out.push(`poolview bench — ${result.date}${QUICK ? ' (QUICK: small sizes, not a budget run)' : ''}`);
out.push(`machine: ${machine.cores} cores, ${machine.model}, ${machine.memoryGiB} GiB, Node ${machine.node}; load average ${loadAtStart[0]} at start, ${machine.loadAverageAtEnd[0]} at end (shared machine); medians over ${REPS} runs; duration ${durationS} s`);
out.push('upstream: replay = recorded JSON bodies / pre-rendered watch streams from a node:http server in a worker thread; fake = test/fake/apiserver.ts in a worker thread; apiserver = kube-apiserver + etcd (test/support/cluster.ts) on loopback, HTTPS');
out.push('');
out.push(table(rows));
out.push('');
out.push(table(scaleRows));
const missed = figures.filter((f) => f.profile);
if (missed.length) {
  out.push('');
  out.push('Profiles of missed budgets (top 5 self time):');
  for (const f of missed) {
    out.push(`- ${f.name}: ${f.profile!.file}`);
    for (const t of f.profile!.top) out.push(`    ${String(t.percent).padStart(5)}%  ${t.function}  ${t.where}`);
    if (f.profile!.heap) {
      out.push(`  retained allocations (sampled heap): ${f.profile!.heap.file}`);
      for (const t of f.profile!.heap.top) out.push(`    ${String(t.percent).padStart(5)}%  ${t.selfMiB} MiB  ${t.function}  ${t.where}`);
    }
  }
}
if (skipped.length) out.push('', `skipped: ${skipped.join('; ')}`);
if (errors.length) out.push('', `ERRORS:\n${errors.join('\n')}`);
const text = out.join('\n');
console.log(text);
const json = JSON.stringify({ ...result, table: text }, null, 2);
writeFileSync(join(RESULTS, `${stamp}.json`), json);
writeFileSync(join(RESULTS, 'latest.json'), json);
log(`wrote bench/results/${stamp}.json and bench/results/latest.json`);
process.exit(errors.length ? 1 : 0);
