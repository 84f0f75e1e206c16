// The bench's clients, in their own thread: they only read what they are sent (bytes, event lines,
// receive times) so that their own cost stays small and identical for poolview and its baseline.
import { Agent, request } from 'undici';
import type { Readable } from 'node:stream';
import { serve } from './rpc.js';
import { now } from './stats.js';

const AGENT_OPTIONS = { connections: 256, pipelining: 1, keepAliveTimeout: 60_000, headersTimeout: 0, bodyTimeout: 0 };
const dispatcher = new Agent(AGENT_OPTIONS);
/** Dispatchers for HTTPS servers, by the CA (PEM) they trust. */
const tlsDispatchers = new Map<string, Agent>();

/** The dispatcher for a request: the plain one, or one trusting `ca` (e.g. the real apiserver's cluster CA). */
function dispatcherFor(ca?: string): Agent {
  if (!ca) return dispatcher;
  let d = tlsDispatchers.get(ca);
  if (!d) tlsDispatchers.set(ca, (d = new Agent({ ...AGENT_OPTIONS, connect: { ca } })));
  return d;
}

type Headers = Record<string, string>;

async function fetchOnce(url: string, headers: Headers, ca?: string): Promise<number> {
  const res = await request(url, { dispatcher: dispatcherFor(ca), headers });
  let bytes = 0;
  for await (const chunk of res.body) bytes += (chunk as Buffer).length;
  if (res.statusCode !== 200) throw new Error(`GET ${url}: ${res.statusCode}`);
  return bytes;
}

function countLines(chunk: Buffer): number {
  let n = 0;
  let i = -1;
  while ((i = chunk.indexOf(10, i + 1)) !== -1) n++;
  return n;
}

interface OpenWatch {
  path: string;
  body: Readable;
  events: number;
  pending: string;
  /** While armed: keys still awaited, first and last event times. */
  waitFor?: Set<string>;
  first?: number;
  done?: number;
}

const watches: OpenWatch[] = [];
let armedAt = 0;

function onWatchChunk(w: OpenWatch, chunk: Buffer): void {
  const t = now();
  w.events += countLines(chunk);
  if (!w.waitFor) return;
  w.pending += chunk.toString('utf8');
  let start = 0;
  let end: number;
  while ((end = w.pending.indexOf('\n', start)) !== -1) {
    const line = w.pending.slice(start, end);
    start = end + 1;
    if (!w.waitFor || w.waitFor.size === 0) continue;
    const event = JSON.parse(line) as { type: string; object: { metadata: { namespace?: string; name: string } } };
    if (event.type === 'BOOKMARK') continue;
    const key = `${event.object.metadata.namespace}/${event.object.metadata.name}`;
    w.first ??= t;
    if (w.waitFor.delete(key) && w.waitFor.size === 0) w.done = t;
  }
  w.pending = w.pending.slice(start);
}

serve({
  /** `count` GETs of url with `concurrency` in flight; each latency in ms. `ca`: PEM to trust for an https:// url. */
  fetchMany: async ({ url, headers, count, concurrency, ca }: { url: string; headers: Headers; count: number; concurrency: number; ca?: string }) => {
    const latencies: number[] = [];
    let issued = 0;
    let bytes = 0;
    const t0 = now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (issued < count) {
          issued++;
          const s = now();
          bytes += await fetchOnce(url, headers, ca);
          latencies.push(now() - s);
        }
      }),
    );
    return { latencies, elapsedMs: now() - t0, bytes };
  },

  /**
   * The kubelet's steady traffic, `rounds` times in a row (one request in flight, as the kubelet's
   * sync loops mostly are): GET one of its Pods, LIST its node's Pods (resourceVersion=0), PATCH its Node's status,
   * PUT its Lease (with the resourceVersion the last PUT returned). Latencies in ms by kind.
   */
  kubeletMix: async ({ base, headers, ca, rounds, pods, node, lease }: { base: string; headers: Headers; ca?: string; rounds: number; pods: string[]; node: string; lease: string }) => {
    const d = dispatcherFor(ca);
    const latencies: Record<string, number[]> = { getPod: [], listPods: [], patchNodeStatus: [], putLease: [] };
    const call = async (kind: string, method: 'GET' | 'PATCH' | 'PUT', path: string, body?: unknown, contentType?: string): Promise<any> => {
      const s = now();
      const res = await request(base + path, {
        method,
        dispatcher: d,
        headers: body === undefined ? headers : { ...headers, 'content-type': contentType ?? 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.body.text();
      latencies[kind].push(now() - s);
      if (res.statusCode !== 200) throw new Error(`${method} ${path}: ${res.statusCode} ${text.slice(0, 200)}`);
      return kind === 'putLease' ? JSON.parse(text) : undefined;
    };
    let current = (await (await request(base + lease, { dispatcher: d, headers })).body.json()) as { metadata: { resourceVersion: string }; spec: Record<string, unknown> };
    const t0 = now();
    for (let i = 0; i < rounds; i++) {
      await call('getPod', 'GET', pods[i % pods.length]);
      // As its informer lists (re-lists) them: resourceVersion=0, the apiserver's cache.
      await call('listPods', 'GET', `/api/v1/pods?fieldSelector=spec.nodeName%3D${node}&resourceVersion=0`);
      const heartbeat = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
      await call('patchNodeStatus', 'PATCH', `/api/v1/nodes/${node}/status`, { status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', lastHeartbeatTime: heartbeat }] } }, 'application/strategic-merge-patch+json');
      const renew = new Date().toISOString().replace(/Z$/, '000Z');
      current = await call('putLease', 'PUT', lease, { ...current, spec: { ...current.spec, renewTime: renew } });
    }
    return { latencies, elapsedMs: now() - t0 };
  },

  /** One GET of url; its status and body bytes (moved, not copied). */
  fetchBody: async ({ url, headers, ca }: { url: string; headers: Headers; ca?: string }) => {
    const res = await request(url, { dispatcher: dispatcherFor(ca), headers });
    const bytes = await res.body.arrayBuffer();
    return { status: res.statusCode, bytes, __transfer: [bytes] };
  },

  /** `watchers` watches of url at once, read to their end; counts event lines. */
  watchBurst: async ({ url, headers, watchers }: { url: string; headers: Headers; watchers: number }) => {
    const t0 = now();
    const counts = await Promise.all(
      Array.from({ length: watchers }, async () => {
        const res = await request(url, { dispatcher, headers });
        if (res.statusCode !== 200) throw new Error(`WATCH ${url}: ${res.statusCode} ${await res.body.text()}`);
        let events = 0;
        let bytes = 0;
        for await (const chunk of res.body) {
          events += countLines(chunk as Buffer);
          bytes += (chunk as Buffer).length;
        }
        return { events, bytes, end: now() };
      }),
    );
    const end = Math.max(...counts.map((c) => c.end));
    return { elapsedMs: end - t0, events: counts.map((c) => c.events), bytes: counts.reduce((a, c) => a + c.bytes, 0) };
  },

  /** One watch read to its end; the receive time of every event line. */
  watchTimes: async ({ url, headers }: { url: string; headers: Headers }) => {
    const res = await request(url, { dispatcher, headers });
    if (res.statusCode !== 200) throw new Error(`WATCH ${url}: ${res.statusCode}`);
    const times: number[] = [];
    for await (const chunk of res.body) {
      const t = now();
      const n = countLines(chunk as Buffer);
      for (let i = 0; i < n; i++) times.push(t);
    }
    return times;
  },

  /**
   * Opens watches as a client-go reflector would after its LIST: from the list's resourceVersion.
   * Resolves when every watch has its response headers (poolview has built the view by then).
   */
  openWatches: async ({ base, groups, headers }: { base: string; groups: Array<{ path: string; n: number }>; headers: Headers }) => {
    const started = now();
    for (const { path, n } of groups) {
      const listed = await request(`${base}${path}?limit=1`, { dispatcher, headers });
      const list = (await listed.body.json()) as { metadata: { resourceVersion: string } };
      if (listed.statusCode !== 200) throw new Error(`LIST ${path}: ${listed.statusCode} ${JSON.stringify(list)}`);
      const rv = list.metadata.resourceVersion;
      // Opened a few at a time, as node agents starting up would: every one is seeded upstream.
      for (let i = 0; i < n; i += 4) {
        await Promise.all(
          Array.from({ length: Math.min(4, n - i) }, async () => {
            const res = await request(`${base}${path}?watch=true&allowWatchBookmarks=true&resourceVersion=${rv}`, { dispatcher, headers });
            if (res.statusCode !== 200) throw new Error(`WATCH ${path}: ${res.statusCode} ${await res.body.text()}`);
            const w: OpenWatch = { path, body: res.body as Readable, events: 0, pending: '' };
            w.body.on('data', (chunk: Buffer) => onWatchChunk(w, chunk));
            w.body.on('error', () => {});
            watches.push(w);
          }),
        );
      }
    }
    return { open: watches.length, ms: now() - started };
  },

  /** From now on, each open watch waits for an event about every one of the keys given for its path. */
  arm: ({ keysByPath }: { keysByPath: Record<string, string[]> }) => {
    armedAt = now();
    for (const w of watches) {
      w.waitFor = new Set(keysByPath[w.path] ?? []);
      w.first = undefined;
      w.done = undefined;
      w.pending = '';
    }
    return { armedAt };
  },

  /** Waits until every armed watch saw all its keys (or timeoutMs); per watch: first and last event time. */
  collect: async ({ timeoutMs }: { timeoutMs: number }) => {
    const deadline = now() + timeoutMs;
    while (watches.some((w) => w.waitFor && w.waitFor.size > 0) && now() < deadline) await new Promise((r) => setTimeout(r, 2));
    const out = watches.map((w) => ({ path: w.path, first: w.first ?? null, done: w.done ?? null, missing: w.waitFor?.size ?? 0 }));
    for (const w of watches) w.waitFor = undefined;
    return out;
  },

  closeWatches: () => {
    for (const w of watches.splice(0)) w.body.destroy();
    return {};
  },

  watchEvents: () => watches.map((w) => w.events),
});
