// The pass-through proxy answers exactly as the apiserver does, and moves credentials by the rules.
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, quietLogger, startHarness, waitFor, type Answer, type Harness } from './proxy-harness.js';
import { startPoolview } from '../../src/app.js';
import { UsageError } from '../../src/options.js';
import { upstreamFromUrl } from '../../src/upstream.js';
import { forwardHeaders } from '../../src/server.js';
import { createLogger } from '../../src/log.js';

const NS = '/api/v1/namespaces/default';

/** Fields the apiserver sets per object; everything else must match between two equal writes. */
function normalize(body: string, names: string[]): unknown {
  let text = body;
  for (const name of names) text = text.split(name).join('NAME');
  return JSON.parse(text, (key, value) => (['uid', 'resourceVersion', 'creationTimestamp', 'deletionTimestamp'].includes(key) ? 'X' : value));
}

function sameAnswer(viaProxy: Answer, direct: Answer): void {
  expect(viaProxy.status).toBe(direct.status);
  expect(viaProxy.headers['content-type']).toBe(direct.headers['content-type']);
  expect(viaProxy.body).toBe(direct.body);
}

describe('pass-through is transparent', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    h.fake.create('services', { metadata: { name: 'web', namespace: 'default', labels: { app: 'web' } }, spec: { ports: [{ port: 80 }] } });
    h.fake.create('configmaps', { metadata: { name: 'cm', namespace: 'default' }, data: { a: '1' } });
  });
  afterAll(() => h.close());

  it.each([
    ['get', `${NS}/services/web`],
    ['list', `${NS}/services`],
    ['list with selector', `${NS}/services?labelSelector=app%3Dweb`],
    ['cluster-wide list', '/api/v1/services?limit=1'],
    ['table', `${NS}/configmaps`],
    ['not found', `${NS}/services/nope`],
    ['unknown resource', `${NS}/nothings`],
    ['bad selector', `${NS}/services?labelSelector=%3D%3D%3D`],
    ['discovery', '/apis'],
    ['group discovery', '/apis/discovery.k8s.io/v1'],
    ['version', '/version'],
    ['non-api 404', '/nowhere'],
  ])('%s', async (_what, path) => {
    const headers = _what === 'table' ? { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json' } : undefined;
    sameAnswer(await call(h.pv.url, path, { headers }), await call(h.fake.url, path, { headers }));
  });

  it('HEAD answers headers only, as upstream', async () => {
    const viaProxy = await call(h.pv.url, `${NS}/services/web`, { method: 'HEAD' });
    const direct = await call(h.fake.url, `${NS}/services/web`, { method: 'HEAD' });
    expect(viaProxy.status).toBe(direct.status);
    expect(viaProxy.body).toBe('');
  });

  it('create, update, patch, delete and their errors answer as upstream', async () => {
    const body = (name: string) => JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { k: 'v' } });
    const json = { 'content-type': 'application/json' };
    const pairs: Array<[Answer, Answer]> = [];
    const both = async (path: (name: string) => string, init: (name: string) => Parameters<typeof call>[2]) => {
      pairs.push([await call(h.pv.url, path('via-proxy'), init('via-proxy')), await call(h.fake.url, path('direct'), init('direct'))]);
    };
    await both(() => `${NS}/configmaps`, (n) => ({ method: 'POST', headers: json, body: body(n) }));
    await both(() => `${NS}/configmaps`, (n) => ({ method: 'POST', headers: json, body: body(n) })); // 409 AlreadyExists
    await both((n) => `${NS}/configmaps/${n}`, (n) => ({ method: 'PUT', headers: json, body: body(n) }));
    await both((n) => `${NS}/configmaps/${n}`, () => ({ method: 'PATCH', headers: { 'content-type': 'application/merge-patch+json' }, body: '{"data":{"k":"w"}}' }));
    await both((n) => `${NS}/configmaps/${n}`, () => ({ method: 'PATCH', headers: { 'content-type': 'application/json-patch+json' }, body: '[{"op":"add","path":"/data/x","value":"y"}]' }));
    await both((n) => `${NS}/configmaps/${n}`, () => ({ method: 'PATCH', headers: { 'content-type': 'text/plain' }, body: 'x' })); // 415
    await both((n) => `${NS}/configmaps/${n}`, () => ({ method: 'PATCH', headers: { 'content-type': 'application/merge-patch+json' }, body: '{not json' })); // 400
    await both((n) => `${NS}/configmaps/${n}`, () => ({ method: 'DELETE', headers: json, body: '{"kind":"DeleteOptions","apiVersion":"v1"}' }));
    await both((n) => `${NS}/configmaps/${n}`, () => ({ method: 'DELETE' })); // 404 now
    for (const [viaProxy, direct] of pairs) {
      expect(viaProxy.status).toBe(direct.status);
      expect(normalize(viaProxy.body, ['via-proxy']), viaProxy.body).toEqual(normalize(direct.body, ['direct']));
    }
    expect(pairs.map(([p]) => p.status)).toEqual([201, 409, 200, 200, 200, 415, 400, 200, 404]);
  });

  it('sends upstream what the client sent: method, path and query, body, headers', async () => {
    const path = `${NS}/configmaps?fieldManager=test&dryRun=All`;
    const sent = { method: 'POST' as const, headers: { 'content-type': 'application/json', 'user-agent': 'tester/1.0', 'x-custom': 'a' }, body: '{"metadata":{"name":"dry"}}' };
    const before = h.fake.requests.length;
    await call(h.pv.url, path, sent);
    const seen = h.fake.requests.slice(before).find((r) => r.url === path);
    expect(seen).toBeDefined();
    expect(seen!.method).toBe('POST');
    expect(seen!.headers['user-agent']).toBe('tester/1.0');
    expect(seen!.headers['x-custom']).toBe('a');
    expect(seen!.headers['content-length']).toBe(String(sent.body.length));
    expect(seen!.headers.host).toBe(new URL(h.fake.url).host);
  });
});

/** A tiny upstream whose answers a test chooses, to see headers the fake never sends. */
async function localUpstream(handler: (req: IncomingMessage, res: import('node:http').ServerResponse) => void): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

/** node:http sends Connection and repeated headers exactly as given (undici rewrites Connection). */
async function nodeGet(url: string, headers: Record<string, string> | Array<[string, string]>): Promise<{ res: IncomingMessage; body: string }> {
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = httpRequest(url, { headers: Array.isArray(headers) ? headers.flat() : headers, agent: false });
    req.on('response', resolve).on('error', reject).end();
  });
  let body = '';
  for await (const chunk of res) body += chunk;
  return { res, body };
}

describe('headers', () => {
  it('pass repeated response headers and drop hop-by-hop ones both ways', async () => {
    let seen: IncomingMessage | undefined;
    const up = await localUpstream((req, res) => {
      seen = req;
      res.setHeader('Warning', ['299 - "first"', '299 - "second"']);
      res.setHeader('Connection', 'x-secret, keep-alive');
      res.setHeader('X-Secret', 'per-connection');
      res.setHeader('Content-Type', 'application/json');
      res.end('{}');
    });
    const upstream = upstreamFromUrl(up.url);
    const pv = await startPoolview({ nodeName: 'node1', port: 0, healthPort: 0 }, { upstream, logger: quietLogger() });
    try {
      const { res } = await nodeGet(`${pv.url}/api/v1/namespaces/default/pods/p`, {
        'x-hop': 'per-connection',
        connection: 'x-hop',
        'impersonate-group': 'a',
        te: 'trailers',
      });
      expect(res.headersDistinct.warning).toEqual(['299 - "first"', '299 - "second"']);
      expect(res.headers['x-secret']).toBeUndefined();
      expect(seen!.headers['x-hop']).toBeUndefined();
      expect(seen!.headers.te).toBeUndefined();
      expect(seen!.headers['impersonate-group']).toBe('a');
    } finally {
      await pv.close();
      await upstream.close();
      await up.close();
    }
  });

  it('forwardHeaders keeps repeated request headers apart and lets forwardVia win', async () => {
    const up = await localUpstream(() => {});
    const server = createServer((req, res) => {
      delete req.headers['x-deleted'];
      res.end(JSON.stringify(forwardHeaders(req, { dispatcher: undefined as never, headers: { Authorization: 'Bearer own' } })));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { body } = await nodeGet(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, [
        ['Host', 'localhost'], // node:http adds no Host to raw header lists
        ['Impersonate-Group', 'a'],
        ['Impersonate-Group', 'b'],
        ['Authorization', 'Bearer client'],
        ['X-Gone', 'x'],
        ['Connection', 'x-gone'],
        ['X-Deleted', 'y'],
        ['X-Kept', 'z'],
      ]);
      // Raw pairs, in the client's order and spelling; Authorization replaced by forwardVia's.
      expect(JSON.parse(body)).toEqual(['Impersonate-Group', 'a', 'Impersonate-Group', 'b', 'X-Kept', 'z', 'Authorization', 'Bearer own']);
    } finally {
      server.close();
      await up.close();
    }
  });

  it('an unreachable apiserver answers 503 Status, not a hang', async () => {
    const up = await localUpstream(() => {});
    const url = up.url;
    await up.close();
    const upstream = upstreamFromUrl(url);
    const pv = await startPoolview({ nodeName: 'node1', port: 0, healthPort: 0 }, { upstream, logger: quietLogger() });
    try {
      const res = await call(pv.url, '/api/v1/pods');
      expect(res.status).toBe(503);
      expect(JSON.parse(res.body)).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'ServiceUnavailable', code: 503 });
      expect(res.headers['retry-after']).toBe('1');
      const ready = await call(pv.healthUrl, '/readyz?verbose');
      expect(ready.status).toBe(500);
      expect(ready.body).toMatch(/^\[-\]apiserver failed: /m);
    } finally {
      await pv.close();
      await upstream.close();
    }
  });
});

describe('credentials', () => {
  const tokens = { 'client-token': 'alice', 'own-token': 'system:serviceaccount:kube-system:poolview' };
  const lastSeen = (h: Harness, path: string) => [...h.fake.requests].reverse().find((r) => r.url === path);

  describe('anonymous forward (default)', () => {
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness({ fake: { tokens }, ownToken: 'own-token' });
    });
    afterAll(() => h.close());

    it("passes the client's Authorization unchanged", async () => {
      const path = `${NS}/services?limit=7`;
      const res = await call(h.pv.url, path, { headers: { authorization: 'Bearer client-token' } });
      expect(res.status).toBe(200);
      expect(lastSeen(h, path)!.headers.authorization).toBe('Bearer client-token');
    });

    it("never uses poolview's own token for a client: a bad token stays bad", async () => {
      const path = `${NS}/services?limit=8`;
      const viaProxy = await call(h.pv.url, path, { headers: { authorization: 'Bearer wrong' } });
      const direct = await call(h.fake.url, path, { headers: { authorization: 'Bearer wrong' } });
      sameAnswer(viaProxy, direct);
      expect(viaProxy.status).toBe(401);
      const seen = h.fake.requests.filter((r) => r.url === path);
      expect(seen.map((r) => r.headers.authorization)).toEqual(['Bearer wrong', 'Bearer wrong']);
    });

    it('forwards an anonymous request as it is, without credentials', async () => {
      const path = `${NS}/services?limit=9`;
      const viaProxy = await call(h.pv.url, path);
      sameAnswer(viaProxy, await call(h.fake.url, path));
      expect(viaProxy.status).toBe(401);
      for (const r of h.fake.requests.filter((x) => x.url === path)) expect(r.headers.authorization).toBeUndefined();
    });

    it("keeps poolview's own credentials for its own requests (readiness probe)", async () => {
      const ready = await call(h.pv.healthUrl, '/readyz');
      expect(ready).toMatchObject({ status: 200, body: 'ok' });
      const probe = h.fake.requests.find((r) => r.url === '/readyz');
      expect(probe!.headers.authorization).toBe('Bearer own-token');
    });
  });

  it('anonymous reject answers 401 like the apiserver, and lets credentials through', async () => {
    const h = await startHarness({ fake: { tokens }, ownToken: 'own-token', poolview: { anonymousRequests: 'reject' } });
    try {
      const path = `${NS}/services?limit=10`;
      const res = await call(h.pv.url, path);
      expect(res.status).toBe(401);
      expect(JSON.parse(res.body)).toEqual({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
      expect(lastSeen(h, path)).toBeUndefined();
      expect((await call(h.pv.url, path, { headers: { authorization: 'Bearer client-token' } })).status).toBe(200);
    } finally {
      await h.close();
    }
  });

  it("anonymous proxy-identity uses poolview's identity, without impersonation", async () => {
    const h = await startHarness({ fake: { tokens }, ownToken: 'own-token', poolview: { anonymousRequests: 'proxy-identity' } });
    try {
      const path = `${NS}/services?limit=11`;
      const res = await call(h.pv.url, path, { headers: { 'impersonate-user': 'admin', 'impersonate-group': 'system:masters' } });
      expect(res.status).toBe(200);
      const seen = lastSeen(h, path)!;
      expect(seen.headers.authorization).toBe('Bearer own-token');
      expect(seen.headers['impersonate-user']).toBeUndefined();
      expect(seen.headers['impersonate-group']).toBeUndefined();
      // A client with its own credentials still speaks for itself.
      const path2 = `${NS}/services?limit=12`;
      await call(h.pv.url, path2, { headers: { authorization: 'Bearer client-token', 'impersonate-user': 'bob' } });
      expect(lastSeen(h, path2)!.headers).toMatchObject({ authorization: 'Bearer client-token', 'impersonate-user': 'bob' });
    } finally {
      await h.close();
    }
  });

  it('refuses proxy-identity on a non-loopback bind address', async () => {
    const upstream = upstreamFromUrl('http://127.0.0.1:1');
    try {
      for (const bindAddress of ['0.0.0.0', '10.0.0.5', '::']) {
        await expect(
          startPoolview({ nodeName: 'node1', bindAddress, anonymousRequests: 'proxy-identity', port: 0, healthPort: 0 }, { upstream, logger: quietLogger() }),
        ).rejects.toThrow(UsageError);
      }
    } finally {
      await upstream.close();
    }
  });
});

describe('request log', () => {
  it('logs component, verb, resource, code and duration at debug, and never a credential', async () => {
    let output = '';
    const sink = new Writable({ write: (chunk, _enc, done) => ((output += chunk), done()) });
    const h = await startHarness({ fake: { tokens: { 'secret-client-token': 'alice', 'secret-own-token': 'pv' } }, ownToken: 'secret-own-token', deps: { logger: createLogger('debug', sink) } });
    try {
      await call(h.pv.url, `${NS}/services?limit=3`, { headers: { authorization: 'Bearer secret-client-token', 'user-agent': 'kubectl/v1.30.0' } });
      await waitFor(() => output.includes('"msg":"request"'), 2_000, 'request log');
      const line = output.split('\n').find((l) => l.includes('"msg":"request"') && l.includes('kubectl'))!;
      expect(JSON.parse(line)).toMatchObject({ level: 20, component: 'kubectl', verb: 'list', resource: 'services', namespace: 'default', code: 200 });
      expect(JSON.parse(line).ms).toBeTypeOf('number');
    } finally {
      await h.close();
    }
    expect(output).not.toContain('secret-client-token');
    expect(output).not.toContain('secret-own-token');
  });
});

describe('health and metrics', () => {
  it('serves healthz, livez, readyz (verbose and per check) and bounded metrics', async () => {
    const h = await startHarness();
    try {
      expect(await call(h.pv.healthUrl, '/healthz')).toMatchObject({ status: 200, body: 'ok' });
      expect(await call(h.pv.healthUrl, '/livez')).toMatchObject({ status: 200, body: 'ok' });
      await waitFor(async () => (await call(h.pv.healthUrl, '/readyz')).status === 200, 10_000, 'ready');
      const verbose = await call(h.pv.healthUrl, '/readyz?verbose');
      expect(verbose.body).toMatch(/^\[\+\]apiserver ok$/m);
      expect(verbose.body.trim().split('\n').pop()).toBe('readyz check passed');
      expect((await call(h.pv.healthUrl, '/readyz/apiserver')).body).toBe('ok');
      expect((await call(h.pv.healthUrl, '/readyz/nope')).status).toBe(404);

      // A resource no filter reads, so the proxy (not the view engine) answers.
      await call(h.pv.url, `${NS}/configmaps`, { headers: { 'user-agent': 'kube-proxy/v1.30.0 (linux/amd64)' } });
      await call(h.pv.url, `${NS}/services/x`, { headers: { 'user-agent': 'Weird-Thing-12345/1' } });
      await call(h.pv.url, `${NS}/widgets-12345`);
      const metrics = await call(h.pv.healthUrl, '/metrics');
      expect(metrics.status).toBe(200);
      expect(metrics.body).toMatch(/poolview_requests_total\{component="kube-proxy",verb="list",resource="configmaps",code="200"\} 1/);
      expect(metrics.body).toMatch(/poolview_requests_total\{component="other",verb="get",resource="services",code="404"\} 1/);
      expect(metrics.body).toMatch(/poolview_requests_total\{component="none",verb="list",resource="other",code="404"\} 1/);
      expect(metrics.body).not.toMatch(/weird|widgets/i);
      expect(metrics.body).toMatch(/^poolview_upstream_up 1$/m);
      // /readyz as gauges: every check of the verbose answer, passing, none reporting an error.
      const checks = [...verbose.body.matchAll(/^\[\+\](\S+) ok$/gm)].map((m) => m[1]);
      expect(checks.length).toBeGreaterThan(1);
      for (const check of checks) {
        expect(metrics.body).toContain(`poolview_readyz_check{check="${check}"} 1\n`);
        expect(metrics.body).toContain(`poolview_readyz_check_error{check="${check}"} 0\n`);
      }
      expect(metrics.body).toMatch(/^poolview_proxied_bytes_total\{direction="downstream"\} [1-9]/m);
      expect(metrics.body).toMatch(/^process_cpu_seconds_total/m);
      expect(h.pv.registry.getSingleMetric('poolview_open_watches')).toBeDefined();
    } finally {
      await h.close();
    }
  });
});
