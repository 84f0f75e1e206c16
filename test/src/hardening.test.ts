// Hostile or careless clients and a broken upstream (issue "Hardening"): no request can stall the
// node's other agents, inputs are bounded, and requests are classified and answered as the
// apiserver would. The upstream is the fake apiserver behind a gate that can stall chosen requests.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { execFileSync } from 'node:child_process';
import { request } from 'undici';
import { startFakeApiserver, type FakeApiserver } from '../fake/apiserver.js';
import { startPoolview, type RunningPoolview } from '../../src/app.js';
import { upstreamFromUrl, type KubeUpstream } from '../../src/upstream.js';
import { quietLogger } from './proxy-harness.js';

const KUBE_PROXY = 'kube-proxy/v1.35.4 (linux/amd64) kubernetes/test';
const NS = 'hardening';

/** A pass-through in front of the fake that holds requests matching `stall` (headers, then silence). */
interface Gate {
  url: string;
  stall: ((req: IncomingMessage) => boolean) | undefined;
  /** Requests answered 500 InternalError instead. */
  fail: ((req: IncomingMessage) => boolean) | undefined;
  stalled: number;
  failed: number;
  release(): void;
  close(): Promise<void>;
}

async function startGate(target: string): Promise<Gate> {
  const held: ServerResponse[] = [];
  const gate: Gate = {
    url: '',
    stall: undefined,
    fail: undefined,
    stalled: 0,
    failed: 0,
    release: () => {
      for (const res of held.splice(0)) res.destroy();
    },
    close: async () => {
      gate.release();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
  const server: Server = createServer((req, res) => {
    if (gate.fail?.(req)) {
      gate.failed++;
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end('{"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcd is down","reason":"InternalError","code":500}');
      return;
    }
    if (gate.stall?.(req)) {
      gate.stalled++;
      held.push(res);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[');
      return;
    }
    const up = httpRequest(target + req.url, { method: req.method, headers: req.headers }, (upRes) => {
      // As the apiserver does: an audit ID and, here, a warning on every answer.
      res.writeHead(upRes.statusCode!, { ...upRes.headers, 'audit-id': `gate-${gate.stalled}`, warning: '299 - "gate warning"' });
      upRes.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
    res.on('close', () => up.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  gate.url = `http://127.0.0.1:${port}`;
  return gate;
}

function nodePortService(name: string, listen: string, extra: Record<string, string> = {}) {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: NS, annotations: { 'nodeport.openyurt.io/listen': listen, ...extra } },
    spec: { type: 'NodePort', ports: [{ port: 80, nodePort: 30080, protocol: 'TCP' }] },
  };
}

async function get(base: string, path: string, headers: Record<string, string> = {}) {
  const res = await request(base + path, { headers: { 'user-agent': KUBE_PROXY, accept: 'application/json', ...headers } });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

/** Sends raw bytes on a fresh connection and returns everything until the server closes or `ms` pass. */
function raw(url: string, bytes: string, ms = 2000): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname, () => socket.write(bytes));
    let out = '';
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(out);
    };
    const timer = setTimeout(done, ms);
    socket.on('data', (d) => {
      out += d.toString();
      // One whole response is enough: headers and a body of the declared length.
      const m = /content-length: (\d+)/i.exec(out);
      const head = out.indexOf('\r\n\r\n');
      if (m && head !== -1 && Buffer.byteLength(out.slice(head + 4)) >= Number(m[1])) done();
    });
    socket.on('close', done);
    socket.on('error', done);
  });
}

describe('hardening', () => {
  let fake: FakeApiserver;
  let gate: Gate;
  let upstream: KubeUpstream;
  let pv: RunningPoolview;
  let leases: NodeJS.Timeout;

  beforeAll(async () => {
    fake = await startFakeApiserver({ bookmarkIntervalMs: 200 });
    for (const [node, pool] of [['n1', 'pool1'], ['n2', 'pool2']]) {
      fake.create('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: node, labels: { 'apps.openyurt.io/nodepool': pool } } });
      fake.create('nodepools', { apiVersion: 'apps.openyurt.io/v1beta2', kind: 'NodePool', metadata: { name: pool }, status: { nodes: [node] } });
    }
    fake.create('leases', { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'n1', namespace: 'kube-node-lease' } });
    leases = setInterval(() => fake.update('leases', fake.get('leases', 'kube-node-lease', 'n1')!), 100);
    fake.create('services', nodePortService('mine', 'pool1', { 'poolview.test/pool': '杭州' }));
    fake.create('services', nodePortService('theirs', 'pool2'));
    gate = await startGate(fake.url);
    upstream = upstreamFromUrl(gate.url);
    pv = await startPoolview(
      { nodeName: 'n1', port: 0, healthPort: 0, healthBindAddress: '127.0.0.2' },
      { upstream, logger: quietLogger() },
    );
  });
  afterAll(async () => {
    clearInterval(leases);
    await pv?.close();
    await upstream?.close();
    await gate?.close();
    await fake?.close();
  });

  const names = (text: string) => (JSON.parse(text).items as Array<{ metadata: { name: string } }>).map((i) => i.metadata.name).sort();

  it('?watch=yes is a watch (filtered, streaming), and a LIST next to it is served at once', async () => {
    const abort = new AbortController();
    const res = await request(`${pv.url}/api/v1/namespaces/${NS}/services?watch=yes`, { headers: { 'user-agent': KUBE_PROXY }, signal: abort.signal });
    expect(res.statusCode).toBe(200);
    let seen = '';
    const reading = (async () => {
      try {
        for await (const chunk of res.body) {
          seen += chunk.toString();
          if (seen.includes('"mine"')) break;
        }
      } catch {
        /* aborted */
      }
    })();
    await Promise.race([reading, new Promise((r) => setTimeout(r, 5000))]);
    expect(seen).toContain('"type":"ADDED"');
    expect(seen).not.toContain('"theirs"');
    const list = await get(pv.url, `/api/v1/namespaces/${NS}/services`);
    expect(list.status).toBe(200);
    expect(names(list.text)).toEqual(['mine']);
    abort.abort();
  });

  it('a LIST whose upstream body stalls and 500 resumes whose seed never answers block no other client', async () => {
    gate.stall = (req) => /resourceVersionMatch=Exact/.test(req.url ?? '') || /labelSelector=stall/.test(req.url ?? '');
    const aborts: AbortController[] = [];
    const open = (path: string) => {
      const abort = new AbortController();
      aborts.push(abort);
      void request(pv.url + path, { headers: { 'user-agent': KUBE_PROXY }, signal: abort.signal }).then(
        (r) => r.body.dump().catch(() => {}),
        () => {},
      );
    };
    try {
      for (let i = 0; i < 5; i++) open(`/api/v1/namespaces/${NS}/services?labelSelector=stall`);
      const rv = fake.rv() - 1;
      for (let i = 0; i < 500; i++) open(`/api/v1/namespaces/${NS}/services?watch=true&resourceVersion=${rv - (i % 3)}`);
      await waitFor(() => gate.stalled >= 5 + 3);
      const started = Date.now();
      const list = await get(pv.url, `/api/v1/namespaces/${NS}/services`);
      expect(list.status).toBe(200);
      expect(names(list.text)).toEqual(['mine']);
      // Well inside the slots' 20 s wait: nothing queued behind the stalled reads.
      expect(Date.now() - started).toBeLessThan(10_000);
      // The 500 resumes share one seed read per revision.
      expect(gate.stalled).toBe(5 + 3);
    } finally {
      gate.stall = undefined;
      for (const a of aborts) a.abort();
      gate.release();
    }
  });

  it('keeps multi-byte characters whole across chunks and the upstream headers of a filtered LIST', async () => {
    const list = await get(pv.url, `/api/v1/namespaces/${NS}/services`);
    expect(JSON.parse(list.text).items[0].metadata.annotations['poolview.test/pool']).toBe('杭州');
    expect(list.headers['audit-id']).toMatch(/^gate-/);
    expect(list.headers.warning).toBe('299 - "gate warning"');
  });

  it('an absolute-form request line is classified and filtered like the origin form', async () => {
    const { host } = new URL(pv.url);
    const answer = await raw(pv.url, `GET http://${host}/api/v1/namespaces/${NS}/services HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: ${KUBE_PROXY}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1.1 200/);
    expect(answer).toContain('"mine"');
    expect(answer).not.toContain('"theirs"');
  });

  it('OPTIONS * gets an empty 200 and CONNECT a 405 Status, as answers and not dropped sockets', async () => {
    const { host } = new URL(pv.url);
    expect(await raw(pv.url, `OPTIONS * HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)).toMatch(/^HTTP\/1.1 200[^]*content-length: 0/i);
    const connectAnswer = await raw(pv.url, `CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n`);
    expect(connectAnswer).toMatch(/^HTTP\/1.1 405/);
    expect(connectAnswer).toContain('"reason":"MethodNotAllowed"');
  });

  it('the health port binds apart from the proxy, and /readyz/%zz is a 404', async () => {
    expect(new URL(pv.healthUrl).hostname).toBe('127.0.0.2');
    expect((await request(`${pv.healthUrl}/readyz/%zz`)).statusCode).toBe(404);
    const healthPort = new URL(pv.healthUrl).port;
    await expect(request(`http://127.0.0.1:${healthPort}/healthz`)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('upstream connections carry TCP keepalive with a 15 s idle time (a dead watch is noticed in about 25 s)', async () => {
    const abort = new AbortController();
    const res = await request(`${pv.url}/api/v1/namespaces/${NS}/services?watch=true`, { headers: { 'user-agent': KUBE_PROXY }, signal: abort.signal });
    expect(res.statusCode).toBe(200);
    const gatePort = new URL(gate.url).port;
    const sockets = execFileSync('ss', ['-tnoH', 'state', 'established', `( dport = :${gatePort} )`], { encoding: 'utf8' });
    const timers = [...sockets.matchAll(/timer:\(keepalive,([\d.]+)(ms|sec|min)/g)].map(([, n, unit]) => Number(n) * (unit === 'ms' ? 0.001 : unit === 'min' ? 60 : 1));
    expect(timers.length).toBeGreaterThan(0);
    for (const seconds of timers) expect(seconds).toBeLessThanOrEqual(15);
    abort.abort();
    await res.body.dump().catch(() => {});
  });

  it('a watch resumed right after start gets its events, not a spurious 410 (the initial sync is no scope change)', async () => {
    for (let round = 0; round < 3; round++) {
      const fresh = await startPoolview({ nodeName: 'n1', port: 0, healthPort: 0 }, { upstream, logger: quietLogger() });
      try {
        // An untargeted client served before the sources synced, as the kubelet may be.
        await get(fresh.url, `/api/v1/namespaces/${NS}/services`, { 'user-agent': 'kubectl/v1.35.4' });
        const list = await get(fresh.url, `/api/v1/namespaces/${NS}/services`);
        const rv = JSON.parse(list.text).metadata.resourceVersion;
        const abort = new AbortController();
        const res = await request(`${fresh.url}/api/v1/namespaces/${NS}/services?watch=true&allowWatchBookmarks=true&resourceVersion=${rv}`, {
          headers: { 'user-agent': KUBE_PROXY },
          signal: abort.signal,
        });
        let first = '';
        for await (const chunk of res.body) {
          first += chunk.toString();
          if (first.includes('\n')) break;
        }
        abort.abort();
        // Lease writes move the revision: the first line is a bookmark, never an ERROR.
        expect(JSON.parse(first.split('\n')[0]).type).toBe('BOOKMARK');
      } finally {
        await fresh.close();
      }
    }
  });

  it('a scope source whose LIST fails retries with backoff, shows in /readyz?verbose, and /readyz fails meanwhile', async () => {
    gate.fail = (req) => (req.url ?? '').startsWith('/api/v1/nodes?');
    const fresh = await startPoolview({ nodeName: 'n1', port: 0, healthPort: 0 }, { upstream, logger: quietLogger() });
    try {
      const readyz = async (q = '') => {
        const res = await request(`${fresh.healthUrl}/readyz${q}`);
        return { status: res.statusCode, text: await res.body.text() };
      };
      await waitFor(() => gate.failed >= 2);
      expect((await readyz()).status).toBe(500);
      expect((await readyz('?verbose')).text).toMatch(/\[-\]scope-source-nodes failed: .*HTTP 500/);
      gate.fail = undefined;
      await waitFor(async () => (await readyz()).status === 200, 15_000);
    } finally {
      gate.fail = undefined;
      await fresh.close();
    }
  });

  it('a malformed resourceVersion or resourceVersionMatch goes upstream as sent, not as a fresh list', async () => {
    for (const query of ['resourceVersion=abc', 'resourceVersionMatch=Bogus&resourceVersion=1', 'resourceVersion=-1']) {
      const before = fake.requests.length;
      await get(pv.url, `/api/v1/namespaces/${NS}/services?${query}`);
      const sent = fake.requests.slice(before).map((r) => r.url).filter((u) => u.startsWith(`/api/v1/namespaces/${NS}/services?`));
      expect(sent.some((u) => new URLSearchParams(u.split('?')[1]).toString() === new URLSearchParams(query).toString())).toBe(true);
    }
  });
});

async function waitFor(condition: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
