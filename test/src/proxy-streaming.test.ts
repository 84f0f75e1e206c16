// Streams through the proxy: watches (long, many, cut at either end), big lists with backpressure,
// slow clients, graceful shutdown.
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { request, type Dispatcher } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { call, newAgent, noViews, quietLogger, startHarness, waitFor, type Harness } from './proxy-harness.js';
import { startPoolview, type RunningPoolview } from '../../src/app.js';
import { upstreamFromUrl, type KubeUpstream } from '../../src/upstream.js';

const NS = '/api/v1/namespaces/default';

interface OpenWatch {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  events: Array<{ type: string; object: { metadata: { name: string; resourceVersion: string } } }>;
  /** Resolves when the stream ends: 'end' (clean) or the error message. */
  done: Promise<string>;
  abort(): void;
}

async function openWatch(base: string, path: string, dispatcher?: Dispatcher): Promise<OpenWatch> {
  const controller = new AbortController();
  const res = await request(base + path, { dispatcher, signal: controller.signal });
  const events: OpenWatch['events'] = [];
  const done = (async () => {
    let pending = '';
    try {
      for await (const chunk of res.body) {
        pending += chunk.toString();
        let nl: number;
        while ((nl = pending.indexOf('\n')) !== -1) {
          events.push(JSON.parse(pending.slice(0, nl)));
          pending = pending.slice(nl + 1);
        }
      }
      return 'end';
    } catch (err) {
      return (err as Error).message;
    }
  })();
  return { status: res.statusCode, headers: res.headers, events, done, abort: () => controller.abort() };
}

describe('watches through the fake apiserver', () => {
  let h: Harness;
  beforeAll(async () => {
    // Without the view engine's own informers, every watch the fake counts is a client's.
    h = await startHarness({ deps: { startViews: noViews } });
  });
  afterAll(() => h.close());
  // Each test starts with no watch open upstream (a closed one may take a moment to go).
  beforeEach(() => waitFor(() => h.fake.openWatches() === 0, 5_000, 'no open upstream watch'));

  it('show their headers at once and deliver each event as it happens', async () => {
    const w = await openWatch(h.pv.url, `${NS}/configmaps?watch=true&resourceVersion=${h.fake.rv()}`);
    // Headers came back before any event existed (client-go blocks on them).
    expect(w.status).toBe(200);
    expect(w.headers['content-type']).toBe('application/json');
    for (const name of ['a', 'b', 'c']) {
      const started = Date.now();
      h.fake.create('configmaps', { metadata: { name: `flush-${name}` } });
      await waitFor(() => w.events.some((e) => e.object.metadata.name === `flush-${name}`), 2_000, `event ${name}`);
      expect(Date.now() - started).toBeLessThan(500);
    }
    expect(w.events.map((e) => e.type)).toEqual(['ADDED', 'ADDED', 'ADDED']);
    w.abort();
    await w.done;
  });

  it('a client going away ends the upstream watch', async () => {
    const w = await openWatch(h.pv.url, `${NS}/pods?watch=1`);
    await waitFor(() => h.fake.openWatches() === 1, 2_000, 'upstream watch');
    w.abort();
    await waitFor(() => h.fake.openWatches() === 0, 2_000, 'upstream watch to end');
  });

  it('the apiserver cutting a watch ends the client stream cleanly', async () => {
    const w = await openWatch(h.pv.url, `${NS}/configmaps?watch=true&labelSelector=cut`);
    expect(w.status).toBe(200);
    await waitFor(() => h.fake.openWatches() === 1, 2_000, 'upstream watch');
    h.fake.dropWatches();
    expect(await w.done).toBe('end');
  });

  it('1,000 concurrent watches opened and closed leave no watch open upstream', async () => {
    const baseline = 0;
    const agent = newAgent();
    try {
      const watches = await Promise.all(
        Array.from({ length: 1000 }, (_, i) => openWatch(h.pv.url, `${NS}/services?watch=true&labelSelector=n%3D${i}`, agent)),
      );
      expect(watches.every((w) => w.status === 200)).toBe(true);
      await waitFor(() => h.fake.openWatches() === baseline + 1000, 30_000, '1000 upstream watches');
      // Half closed by the client, half by the client's connections going away.
      for (const w of watches.slice(0, 500)) w.abort();
      await agent.destroy();
      await Promise.all(watches.map((w) => w.done));
      await waitFor(() => h.fake.openWatches() === baseline, 30_000, 'upstream watches to end');
      const metrics = await call(h.pv.healthUrl, '/metrics');
      expect(metrics.body).not.toMatch(/^poolview_open_watches\{[^}]*\} [1-9]/m);
    } finally {
      await agent.destroy().catch(() => {});
    }
  }, 120_000);

  it('a watch still delivers after more than 60 s', async () => {
    const w = await openWatch(h.pv.url, `${NS}/endpoints?watch=true&resourceVersion=${h.fake.rv()}`);
    await new Promise((r) => setTimeout(r, 65_000));
    h.fake.create('endpoints', { metadata: { name: 'late' } });
    await waitFor(() => w.events.some((e) => e.object.metadata.name === 'late'), 5_000, 'late event');
    w.abort();
    await w.done;
  }, 90_000);
});

const MiB = 1024 * 1024;
const CHUNK = 64 * 1024;

/** An upstream with /big: a 50 MiB list body written in chunks with backpressure; anything else answers small JSON. */
async function bigListUpstream(size = 50 * MiB): Promise<{ url: string; written: () => number; hash: string; close(): Promise<void> }> {
  let written = 0;
  const chunkAt = (i: number) => Buffer.alloc(CHUNK, String.fromCharCode(97 + (i % 26)));
  const hash = createHash('sha256');
  for (let i = 0; i * CHUNK < size; i++) hash.update(chunkAt(i));
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.url !== '/api/v1/configmaps') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"kind":"Status","status":"Success"}');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    let i = 0;
    const pump = () => {
      while (i * CHUNK < size) {
        const chunk = chunkAt(i++);
        written += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    written: () => written,
    hash: hash.digest('hex'),
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

function gcFunction(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

const retained = () => {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

describe('big bodies and slow clients', () => {
  let up: Awaited<ReturnType<typeof bigListUpstream>>;
  let upstream: KubeUpstream;
  let pv: RunningPoolview;
  beforeAll(async () => {
    up = await bigListUpstream();
    upstream = upstreamFromUrl(up.url);
    pv = await startPoolview({ nodeName: 'node1', port: 0, healthPort: 0 }, { upstream, logger: quietLogger(), startViews: noViews });
  });
  afterAll(async () => {
    await pv.close();
    await upstream.close();
    await up.close();
  });

  it('a 50 MiB list streams through byte for byte without being held, and a stalled reader holds back the apiserver', async () => {
    const gc = gcFunction();
    gc();
    const before = retained();
    const writtenBefore = up.written();
    const res = await request(`${pv.url}/api/v1/configmaps`);
    expect(res.statusCode).toBe(200);
    const hash = createHash('sha256');
    let received = 0;
    let paused = false;
    const samples: number[] = [];
    for await (const chunk of res.body) {
      hash.update(chunk);
      received += chunk.length;
      if (!paused && received >= 10 * MiB) {
        // Stop reading for a while: the proxy must not read ahead for us.
        paused = true;
        await new Promise((r) => setTimeout(r, 1_000));
        const aheadOfClient = up.written() - writtenBefore - received;
        // Socket buffers of three loopback hops, not the body.
        expect(aheadOfClient).toBeLessThan(20 * MiB);
        gc();
        samples.push(retained() - before);
      }
      if (received >= 30 * MiB && samples.length === 1) {
        gc();
        samples.push(retained() - before);
      }
    }
    expect(received).toBe(50 * MiB);
    expect(hash.digest('hex')).toBe(up.hash);
    for (const growth of samples) expect(growth).toBeLessThan(16 * MiB);
  }, 60_000);

  it('a client that stops reading does not stall other clients', async () => {
    const stalled = await request(`${pv.url}/api/v1/configmaps`);
    const first = await new Promise<Buffer>((r) => stalled.body.once('data', r));
    stalled.body.pause();
    expect(first.length).toBeGreaterThan(0);
    const started = Date.now();
    const answers = await Promise.all(Array.from({ length: 50 }, () => call(pv.url, '/api/v1/namespaces/default/configmaps/x')));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    // Another big list completes while the first is still stalled.
    const other = await request(`${pv.url}/api/v1/configmaps`);
    let bytes = 0;
    for await (const chunk of other.body) bytes += chunk.length;
    expect(bytes).toBe(50 * MiB);
    expect(Date.now() - started).toBeLessThan(20_000);
    stalled.body.destroy();
  }, 60_000);
});

describe('graceful shutdown', () => {
  it('ends open watches cleanly, lets short requests finish, refuses new connections', async () => {
    const h = await startHarness({ deps: { startViews: noViews } });
    let slowDone: Promise<number> | undefined;
    let podGets = 0;
    const slow = createServer((req, res) => {
      if (req.url?.endsWith('/pods/p')) podGets++;
      setTimeout(() => res.end('{}'), 500);
    });
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    try {
      const w = await openWatch(h.pv.url, `${NS}/configmaps?watch=true`);
      const w2 = await openWatch(h.pv.url, `/api/v1/watch/namespaces/default/services`);
      await waitFor(() => h.fake.openWatches() >= 2);
      // A non-watch request in flight at shutdown gets its answer.
      const slowUpstream = upstreamFromUrl(`http://127.0.0.1:${(slow.address() as AddressInfo).port}`);
      const pv2 = await startPoolview({ nodeName: 'node1', port: 0, healthPort: 0 }, { upstream: slowUpstream, logger: quietLogger(), startViews: noViews });
      slowDone = call(pv2.url, '/api/v1/namespaces/default/pods/p').then((a) => a.status);
      await waitFor(() => podGets === 1, 5_000, 'the request to reach upstream');

      const started = Date.now();
      await Promise.all([h.pv.close(), pv2.close()]);
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(await w.done).toBe('end');
      expect(await w2.done).toBe('end');
      expect(await slowDone).toBe(200);
      await expect(call(h.pv.url, '/version')).rejects.toThrow();
      await slowUpstream.close();
    } finally {
      await h.close();
      slow.close();
    }
  });
});
