// exec/attach/port-forward: Upgrade requests become byte tunnels to the apiserver, or get a clear Status.
import { createHash } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { noViews, quietLogger, startHarness, upgrade, waitFor, type Harness } from './proxy-harness.js';
import { startPoolview } from '../../src/app.js';
import { upstreamFromUrl } from '../../src/upstream.js';

const EXEC = '/api/v1/namespaces/default/pods/web-0/exec?command=sh&stdin=true&stdout=true';
const SPDY: Array<[string, string]> = [
  ['Connection', 'Upgrade'],
  ['Upgrade', 'SPDY/3.1'],
  ['X-Stream-Protocol-Version', 'v5.channel.k8s.io'],
  ['X-Stream-Protocol-Version', 'v4.channel.k8s.io'],
];

describe('upgrade tunnels', () => {
  const tokens = { 'client-token': 'alice', 'own-token': 'poolview' };
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ fake: { tokens }, ownToken: 'own-token', deps: { startViews: noViews } });
    h.fake.create('pods', { metadata: { name: 'web-0', namespace: 'default' }, spec: { containers: [{ name: 'c', image: 'x' }] } });
  });
  afterAll(() => h.close());

  it('tunnels SPDY exec with the client credentials and every protocol header', async () => {
    const a = await upgrade(h.pv.url, EXEC, [...SPDY, ['Authorization', 'Bearer client-token']]);
    expect(a.status).toBe(101);
    expect(a.head).toMatch(/^X-Stream-Protocol-Version: v5\.channel\.k8s\.io$/im);
    a.socket.write('echo me');
    await waitFor(() => a.rest().toString() === 'echo me', 2_000, 'echo');
    const seen = [...h.fake.requests].reverse().find((r) => r.url === EXEC)!;
    expect(seen.headers.authorization).toBe('Bearer client-token');
    expect(seen.headers['x-stream-protocol-version']).toBe('v5.channel.k8s.io, v4.channel.k8s.io');
    expect(seen.headers.host).toBe(new URL(h.fake.url).host);
    a.socket.end();
    await a.closed;
  });

  it('tunnels WebSocket exec, bytes sent with the head included', async () => {
    const key = Buffer.from('0123456789abcdef').toString('base64');
    const a = await upgrade(
      h.pv.url,
      EXEC,
      [
        ['Connection', 'Upgrade'],
        ['Upgrade', 'websocket'],
        ['Sec-WebSocket-Version', '13'],
        ['Sec-WebSocket-Key', key],
        ['Sec-WebSocket-Protocol', 'v5.channel.k8s.io'],
        ['Authorization', 'Bearer client-token'],
      ],
      { head: Buffer.from('early') },
    );
    expect(a.status).toBe(101);
    const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
    expect(a.head).toContain(`Sec-WebSocket-Accept: ${accept}`);
    await waitFor(() => a.rest().toString() === 'early', 2_000, 'early bytes echoed');
    a.socket.destroy();
    await a.closed;
    // The tunnel is gone on poolview's side too.
    await waitFor(async () => {
      const metrics = await (await fetch(`${h.pv.healthUrl}/metrics`)).text();
      return /^poolview_requests_in_flight\{[^}]*resource="pods"\} 0$/m.test(metrics);
    }, 2_000, 'tunnel to close');
  });

  it("passes the apiserver's refusal through: unknown pod → 404 Status", async () => {
    const a = await upgrade(h.pv.url, EXEC.replace('web-0', 'nope'), [...SPDY, ['Authorization', 'Bearer client-token']]);
    expect(a.status).toBe(404);
    await a.closed;
    expect(JSON.parse(a.rest().toString())).toMatchObject({ kind: 'Status', code: 404, reason: 'NotFound' });
  });

  it('forwards an anonymous upgrade without credentials (the apiserver says 401)', async () => {
    const before = h.fake.requests.length;
    const a = await upgrade(h.pv.url, EXEC, SPDY);
    expect(a.status).toBe(401);
    await a.closed;
    const seen = h.fake.requests.slice(before).find((r) => r.url === EXEC)!;
    expect(seen.headers.authorization).toBeUndefined();
  });

  it('anonymous reject answers 401 itself; proxy-identity tunnels as poolview', async () => {
    for (const [anonymousRequests, expected] of [['reject', 401], ['proxy-identity', 101]] as const) {
      const pv = await startPoolview({ nodeName: 'node1', port: 0, healthPort: 0, anonymousRequests }, { upstream: h.upstream, logger: quietLogger(), startViews: noViews });
      try {
        const before = h.fake.requests.length;
        const a = await upgrade(pv.url, EXEC, [...SPDY, ['Impersonate-User', 'admin']]);
        expect(a.status).toBe(expected);
        const seen = h.fake.requests.slice(before).find((r) => r.url === EXEC);
        if (anonymousRequests === 'reject') {
          await a.closed;
          expect(JSON.parse(a.rest().toString())).toMatchObject({ kind: 'Status', code: 401, reason: 'Unauthorized' });
          expect(seen).toBeUndefined();
        } else {
          expect(seen!.headers.authorization).toBe('Bearer own-token');
          expect(seen!.headers['impersonate-user']).toBeUndefined();
          a.socket.destroy();
        }
      } finally {
        await pv.close();
      }
    }
  });
});

it('answers 503 Status at once when the apiserver cannot be reached', async () => {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const upstream = upstreamFromUrl(`http://127.0.0.1:${port}`);
  const pv = await startPoolview({ nodeName: 'node1', port: 0, healthPort: 0 }, { upstream, logger: quietLogger(), startViews: noViews });
  try {
    const started = Date.now();
    const a = await upgrade(pv.url, EXEC, [...SPDY, ['Authorization', 'Bearer t']]);
    await a.closed;
    expect(a.status).toBe(503);
    expect(JSON.parse(a.rest().toString())).toMatchObject({ kind: 'Status', code: 503, reason: 'ServiceUnavailable' });
    expect(Date.now() - started).toBeLessThan(2_000);
  } finally {
    await pv.close();
    await upstream.close();
  }
});
