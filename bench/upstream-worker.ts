// The bench's upstream, in its own thread so that its work is not counted as poolview's:
// - the in-process fake apiserver (test/fake/apiserver.ts) holding the bench cluster, and
// - a front server that answers requests carrying `x-bench-replay: <key>` from recorded JSON bodies
//   and pre-rendered watch streams (the replay server), and pipes every other request to the fake.
// Headers of clients' requests pass through poolview unchanged, so a client picks the replay by
// sending the header, whether it talks to the front directly or through poolview.
import { createServer, request as httpRequest, Agent, type IncomingMessage, type ServerResponse } from 'node:http';
import { startFakeApiserver } from '../test/fake/apiserver.js';
import * as gen from './objects.js';
import { serve } from './rpc.js';
import { now } from './stats.js';

const fake = await startFakeApiserver({ historySize: 250_000 });
const fakeUrl = new URL(fake.url);
const agent = new Agent({ keepAlive: true, maxSockets: 512 });

/** Recorded response bodies by key. */
const bodies = new Map<string, Buffer>();
/**
 * Recorded LIST bodies split around the list's resourceVersion, which is replaced by the current
 * revision when served: a replayed LIST answers as a consistent read would, as of now.
 */
const lists = new Map<string, { head: Buffer; tail: Buffer }>();
/** Pre-rendered watch streams by key: the events, each a line. */
const streams = new Map<string, { lines: Buffer[]; all: Buffer }>();
/** Send times of paced streams by run id. */
const sendTimes = new Map<string, number[]>();
let created = 0;
let heartbeat: NodeJS.Timeout | undefined;

function lease(node: string, beat: number): Record<string, any> {
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name: node, namespace: 'kube-node-lease' },
    spec: { holderIdentity: node, leaseDurationSeconds: 40, renewTime: new Date(Date.UTC(2026, 0, 1) + beat * 100).toISOString().replace('Z', '000Z') },
  };
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-connection']);
const CHUNK = 64 * 1024;

function pipeToFake(req: IncomingMessage, res: ServerResponse): void {
  const up = httpRequest(
    { host: fakeUrl.hostname, port: fakeUrl.port, method: req.method, path: req.url, headers: req.headers, agent },
    (ur) => {
      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(ur.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
      res.writeHead(ur.statusCode ?? 502, headers);
      if (ur.headers['content-length'] === undefined) res.flushHeaders();
      ur.pipe(res);
      res.on('close', () => {
        if (!ur.complete) up.destroy();
      });
    },
  );
  up.on('error', () => res.destroy());
  req.pipe(up);
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

async function writeChunked(res: ServerResponse, buf: Buffer): Promise<void> {
  for (let off = 0; off < buf.length && !res.destroyed; off += CHUNK) {
    if (!res.write(buf.subarray(off, off + CHUNK))) await drained(res);
  }
  res.end();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function paced(res: ServerResponse, lines: Buffer[], runId: string, rate: number, count: number): Promise<void> {
  const times: number[] = new Array(count);
  sendTimes.set(runId, times);
  const start = now();
  let sent = 0;
  while (sent < count && !res.destroyed) {
    const due = Math.min(count, Math.floor(((now() - start) * rate) / 1000) + 1);
    while (sent < due) {
      times[sent] = now();
      res.write(lines[sent % lines.length]);
      sent++;
    }
    await sleep(1);
  }
  res.end();
}

function replay(key: string, req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  const [mode, name, runId, rate, count] = key.split(':');
  if (mode === 'body' && lists.has(name)) {
    const { head, tail } = lists.get(name)!;
    const rv = Buffer.from(String(fake.rv()));
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': head.length + rv.length + tail.length, 'cache-control': 'no-cache, private' });
    res.cork();
    res.write(head);
    res.write(rv);
    res.end(tail);
    return;
  }
  if (mode === 'body') {
    const body = bodies.get(name);
    if (!body) return void res.writeHead(599).end(`no body ${name}`);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length, 'cache-control': 'no-cache, private' });
    res.end(body);
    return;
  }
  const stream = streams.get(name);
  if (!stream) return void res.writeHead(599).end(`no stream ${name}`);
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache, private' });
  res.flushHeaders();
  if (mode === 'burst') void writeChunked(res, stream.all);
  else if (mode === 'paced') void paced(res, stream.lines, runId, Number(rate), Number(count));
  else res.end();
}

const front = createServer((req, res) => {
  const key = req.headers['x-bench-replay'];
  if (typeof key === 'string') replay(key, req, res);
  else pipeToFake(req, res);
});
front.keepAliveTimeout = 60_000;
front.headersTimeout = 0;
front.requestTimeout = 0;
await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
const frontUrl = `http://127.0.0.1:${(front.address() as { port: number }).port}`;

async function get(path: string): Promise<Buffer> {
  const res = await fetch(fake.url + path, { headers: { accept: 'application/json' } });
  if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
  return Buffer.from(await res.arrayBuffer());
}

const ES_PATH = '/apis/discovery.k8s.io/v1/endpointslices';
const SVC_PATH = '/api/v1/services';

serve({
  urls: () => ({ fake: fake.url, front: frontUrl }),

  seedCluster: () => {
    const nodes = gen.nodes();
    for (const node of nodes) {
      fake.create('nodes', node);
      fake.create('leases', lease(node.metadata.name, 0));
    }
    for (let p = 0; p < gen.POOLS; p++) fake.create('nodepools', gen.nodePool(p));
    // Node heartbeats, as in a real cluster (101 nodes renewing every 10 s): the revision moves on
    // about ten times a second, so a LIST that must be no older than a revision poolview saw waits briefly.
    let beat = 0;
    heartbeat = setInterval(() => {
      const node = nodes[beat++ % nodes.length].metadata.name;
      fake.update('leases', lease(node, beat));
    }, 100);
    return { rv: fake.rv() };
  },

  /** Creates Services and EndpointSlices up to n of each. */
  grow: ({ n }: { n: number }) => {
    const started = now();
    for (; created < n; created++) {
      fake.create('services', gen.service(created));
      fake.create('endpointslices', gen.endpointSlice(created));
    }
    return { created, rv: fake.rv(), ms: now() - started };
  },

  /** Records the fake's current LIST answers (and one GET) as replay bodies. */
  record: async ({ suffix }: { suffix: string }) => {
    const es = await get(ES_PATH);
    const svc = await get(SVC_PATH);
    for (const [key, body] of [[`es-list-${suffix}`, es], [`svc-list-${suffix}`, svc]] as const) {
      bodies.set(key, body);
      // The list's own metadata comes before its items.
      const m = /"metadata":\{"resourceVersion":"(\d+)"/.exec(body.subarray(0, 512).toString('latin1'));
      if (!m) throw new Error(`no list resourceVersion in ${key}`);
      const at = m.index + m[0].length - m[1].length - 1;
      lists.set(key, { head: body.subarray(0, at), tail: body.subarray(at + m[1].length) });
    }
    bodies.set('es-get', await get(`/apis/discovery.k8s.io/v1/namespaces/${gen.namespaceOf(1)}/endpointslices/${gen.serviceName(1)}-abcde`));
    return { esBytes: es.length, svcBytes: svc.length };
  },

  /** A copy of a recorded body, moved to the caller (for the in-process floors). */
  body: ({ key }: { key: string }) => {
    const body = bodies.get(key);
    if (!body) throw new Error(`no body ${key}`);
    const copy = new Uint8Array(body.length);
    copy.set(body);
    return { bytes: copy.buffer, __transfer: [copy.buffer] };
  },

  /**
   * Renders a watch stream of EndpointSlice events as the apiserver writes them: ADDED for slices
   * 0..objects-1, then MODIFIED (a new last-change-trigger-time) cycling over them, `events` in all.
   * Every resourceVersion is the fake's current one, so poolview never sees a revision the fake lacks.
   */
  makeStream: ({ name, objects, events, modifiedOnly }: { name: string; objects: number; events: number; modifiedOnly?: boolean }) => {
    const rv = String(fake.rv());
    const base: Record<string, any>[] = [];
    for (let i = 0; i < objects; i++) {
      const stored = fake.get('endpointslices', gen.namespaceOf(i), `${gen.serviceName(i)}-abcde`);
      if (!stored) throw new Error(`slice ${i} is not in the fake (have ${created})`);
      base.push(stored);
    }
    const lines: Buffer[] = [];
    for (let k = 0; k < events; k++) {
      const added = !modifiedOnly && k < objects;
      const obj = base[k % objects];
      const object = added
        ? { ...obj, metadata: { ...obj.metadata, resourceVersion: rv } }
        : {
            ...obj,
            metadata: {
              ...obj.metadata,
              resourceVersion: rv,
              annotations: { ...obj.metadata.annotations, 'endpoints.kubernetes.io/last-change-trigger-time': new Date(Date.UTC(2026, 0, 1, 0, 0, 0, k)).toISOString() },
            },
          };
      lines.push(Buffer.from(JSON.stringify({ type: added ? 'ADDED' : 'MODIFIED', object }) + '\n'));
    }
    const all = Buffer.concat(lines);
    streams.set(name, { lines, all });
    return { events: lines.length, bytes: all.length };
  },

  dropStream: ({ name }: { name: string }) => void streams.delete(name),

  /** The stream's text, for the in-process floor. */
  streamText: ({ name }: { name: string }) => {
    const s = streams.get(name);
    if (!s) throw new Error(`no stream ${name}`);
    const copy = new Uint8Array(s.all.length);
    copy.set(s.all);
    return { bytes: copy.buffer, __transfer: [copy.buffer] };
  },

  sendTimes: ({ runId }: { runId: string }) => {
    const times = sendTimes.get(runId) ?? [];
    sendTimes.delete(runId);
    return times;
  },

  /** Moves the MOVER node into (or out of) pool-0, n1's pool; returns when the change was written. */
  movePool: ({ join }: { join: boolean }) => {
    const t0 = now();
    fake.update('nodepools', gen.nodePool(0, join ? [gen.MOVER] : []));
    return { t0, rv: fake.rv() };
  },

  /** Sets the listen annotation of Service i (a nodeportisolation scope input). */
  setListen: ({ i, listen }: { i: number; listen: string }) => {
    const t0 = now();
    fake.update('services', gen.service(i, listen));
    return { t0, rv: fake.rv() };
  },

  rv: () => fake.rv(),

  close: async () => {
    clearInterval(heartbeat);
    front.closeAllConnections();
    await new Promise<void>((r) => front.close(() => r()));
    await fake.close();
    agent.destroy();
  },
});
