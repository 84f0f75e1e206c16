// Building the upstream from a kubeconfig, and keeping poolview's identity apart from its clients'.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { noViews, quietLogger, upgrade } from './proxy-harness.js';
import { startPoolview } from '../../src/app.js';
import { upstreamFromKubeconfig, UpstreamConfigError } from '../../src/upstream.js';
import { startFakeApiserver } from '../fake/apiserver.js';

let dir: string;
const file = (name: string) => join(dir, name);

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
}

/** A throwaway CA, a serving certificate for 127.0.0.1, and poolview's client certificate. */
function makeCertificates(): void {
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=test-ca');
  for (const [name, subject, ext] of [
    ['server', '/CN=apiserver', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
    ['client', '/O=system:nodes/CN=poolview', 'extendedKeyUsage=clientAuth'],
  ]) {
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
    writeFileSync(file(`${name}.ext`), `${ext}\n`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`);
  }
}

function kubeconfig(name: string, server: string, user: Record<string, unknown>, cluster: Record<string, unknown> = {}): string {
  const path = file(name);
  writeFileSync(
    path,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server, ...cluster } }],
      users: [{ name: 'u', user }],
      contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'ctx',
    }),
  );
  return path;
}

interface Seen {
  url: string;
  clientCert: string | undefined;
  authorization: string | undefined;
}

describe('https upstream from a kubeconfig', () => {
  let server: HttpsServer;
  let serverUrl: string;
  const seen: Seen[] = [];
  const record = (req: IncomingMessage) => {
    const cert = (req.socket as TLSSocket).getPeerCertificate();
    seen.push({ url: req.url ?? '', clientCert: cert && cert.subject ? String(cert.subject.CN) : undefined, authorization: req.headers.authorization });
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'poolview-upstream-'));
    makeCertificates();
    server = createHttpsServer(
      { key: readFileSync(file('server.key')), cert: readFileSync(file('server.crt')), ca: readFileSync(file('ca.crt')), requestCert: true, rejectUnauthorized: false },
      (req, res) => {
        record(req);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"kind":"APIVersions"}');
      },
    );
    server.on('upgrade', (req: IncomingMessage, socket) => {
      record(req);
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n');
      socket.on('data', (d: Buffer) => socket.write(d));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    serverUrl = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }, 60_000);
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  const poolviewUser = () => ({ 'client-certificate': file('client.crt'), 'client-key': file('client.key'), token: 'own-token' });

  it('presents poolview\'s certificate and token on its own requests only', async () => {
    const upstream = await upstreamFromKubeconfig(kubeconfig('kc-https', serverUrl, poolviewUser(), { 'certificate-authority': file('ca.crt') }));
    try {
      expect(upstream.url.origin).toBe(serverUrl);
      expect(upstream.ownHeaders()).toEqual({ authorization: 'Bearer own-token' });
      const ask = async (path: string, dispatcher: typeof upstream.clientDispatcher, headers: Record<string, string> = {}) => {
        const res = await request(serverUrl + path, { dispatcher, headers });
        await res.body.dump();
        return seen.find((s) => s.url === path)!;
      };
      expect(await ask('/as-client', upstream.clientDispatcher)).toMatchObject({ clientCert: undefined, authorization: undefined });
      expect(await ask('/as-poolview', upstream.ownDispatcher, upstream.ownHeaders())).toMatchObject({ clientCert: 'poolview', authorization: 'Bearer own-token' });
    } finally {
      await upstream.close();
    }
  });

  it('through the proxy: a client keeps its own identity; proxy-identity lends poolview\'s, tunnels included', async () => {
    const upstream = await upstreamFromKubeconfig(kubeconfig('kc-https2', serverUrl, poolviewUser(), { 'certificate-authority': file('ca.crt') }));
    const plain = await startPoolview({ nodeName: 'n1', port: 0, healthPort: 0 }, { upstream, logger: quietLogger(), startViews: noViews });
    const lending = await startPoolview({ nodeName: 'n1', port: 0, healthPort: 0, anonymousRequests: 'proxy-identity' }, { upstream, logger: quietLogger(), startViews: noViews });
    try {
      await (await request(`${plain.url}/api/v1/pods?c=1`, { headers: { authorization: 'Bearer client-token' } })).body.dump();
      expect(seen.find((s) => s.url === '/api/v1/pods?c=1')).toMatchObject({ clientCert: undefined, authorization: 'Bearer client-token' });
      await (await request(`${plain.url}/api/v1/pods?c=2`)).body.dump();
      expect(seen.find((s) => s.url === '/api/v1/pods?c=2')).toMatchObject({ clientCert: undefined, authorization: undefined });
      await (await request(`${lending.url}/api/v1/pods?c=3`)).body.dump();
      expect(seen.find((s) => s.url === '/api/v1/pods?c=3')).toMatchObject({ clientCert: 'poolview', authorization: 'Bearer own-token' });

      const spdy: Array<[string, string]> = [['Connection', 'Upgrade'], ['Upgrade', 'SPDY/3.1']];
      const t1 = await upgrade(plain.url, '/api/v1/namespaces/d/pods/p/exec?t=1', [...spdy, ['Authorization', 'Bearer client-token']]);
      expect(t1.status).toBe(101);
      expect(seen.find((s) => s.url === '/api/v1/namespaces/d/pods/p/exec?t=1')).toMatchObject({ clientCert: undefined, authorization: 'Bearer client-token' });
      const t2 = await upgrade(lending.url, '/api/v1/namespaces/d/pods/p/exec?t=2', spdy);
      expect(t2.status).toBe(101);
      expect(seen.find((s) => s.url === '/api/v1/namespaces/d/pods/p/exec?t=2')).toMatchObject({ clientCert: 'poolview', authorization: 'Bearer own-token' });
      t1.socket.destroy();
      t2.socket.destroy();
    } finally {
      await plain.close();
      await lending.close();
      await upstream.close();
    }
  });

  it('serves HTTPS on the secure port with the given certificate', async () => {
    const upstream = await upstreamFromKubeconfig(kubeconfig('kc-https3', serverUrl, poolviewUser(), { 'certificate-authority': file('ca.crt') }));
    const pv = await startPoolview(
      { nodeName: 'n1', port: 0, securePort: 0, healthPort: 0, tlsCertFile: file('server.crt'), tlsPrivateKeyFile: file('server.key') },
      { upstream, logger: quietLogger(), startViews: noViews },
    );
    const trusting = new Agent({ connect: { ca: readFileSync(file('ca.crt')) } });
    try {
      expect(pv.secureUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const res = await request(`${pv.secureUrl}/api/v1/pods?c=secure`, { dispatcher: trusting, headers: { authorization: 'Bearer client-token' } });
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe('{"kind":"APIVersions"}');
    } finally {
      await trusting.close();
      await pv.close();
      await upstream.close();
    }
  });

  it('honours insecure-skip-tls-verify, and otherwise refuses an unknown CA', async () => {
    const skipping = await upstreamFromKubeconfig(kubeconfig('kc-skip', serverUrl, { token: 't' }, { 'insecure-skip-tls-verify': true }));
    const strict = await upstreamFromKubeconfig(kubeconfig('kc-strict', serverUrl, { token: 't' }));
    try {
      expect((await request(`${serverUrl}/skip`, { dispatcher: skipping.ownDispatcher })).statusCode).toBe(200);
      await expect(request(`${serverUrl}/strict`, { dispatcher: strict.ownDispatcher })).rejects.toThrow();
    } finally {
      await skipping.close();
      await strict.close();
    }
  });
});

describe('credentials and errors', () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'poolview-kubeconfig-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a token from an exec credential plugin', async () => {
    const plugin = file('plugin.mjs');
    writeFileSync(plugin, `console.log(JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token: 'from-exec' } }));\n`);
    const upstream = await upstreamFromKubeconfig(
      kubeconfig('kc-exec', 'https://127.0.0.1:6443', { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: process.execPath, args: [plugin], interactiveMode: 'Never' } }),
    );
    try {
      expect(upstream.ownHeaders()).toEqual({ authorization: 'Bearer from-exec' });
    } finally {
      await upstream.close();
    }
  });

  it('talks to a plain http:// server (the fake apiserver) with its token', async () => {
    const fake = await startFakeApiserver({ tokens: { 'own-token': 'poolview' } });
    const upstream = await upstreamFromKubeconfig(kubeconfig('kc-http', fake.url, { token: 'own-token' }));
    try {
      const res = await request(`${fake.url}/api/v1/nodes`, { dispatcher: upstream.ownDispatcher, headers: upstream.ownHeaders() });
      expect(res.statusCode).toBe(200);
      await res.body.dump();
      expect(upstream.tunnelTarget(true)).toEqual({ host: '127.0.0.1', port: Number(new URL(fake.url).port) });
    } finally {
      await upstream.close();
      await fake.close();
    }
  });

  it.each([
    ['a missing file', () => file('nope'), /^cannot read kubeconfig .*nope: no such file$/],
    ['a file that is not YAML', () => (writeFileSync(file('bad'), 'clusters: [\n'), file('bad')), /is not valid/],
    ['no current context', () => (writeFileSync(file('empty'), 'apiVersion: v1\nkind: Config\n'), file('empty')), /names no cluster/],
    ['a server that is not a URL', () => kubeconfig('kc-badurl', 'not a url', {}), /is not a URL/],
    ['a missing client certificate file', () => kubeconfig('kc-nocert', 'https://127.0.0.1:6443', { 'client-certificate': file('gone.crt'), 'client-key': file('gone.key') }), /cannot load credentials/],
  ])('explains %s', async (_what, path, message) => {
    const err = await upstreamFromKubeconfig(path()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamConfigError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).not.toContain('\n');
  });

  it('explains that there is neither a kubeconfig nor a cluster', async () => {
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    delete process.env.KUBERNETES_SERVICE_HOST;
    delete process.env.KUBERNETES_SERVICE_PORT;
    try {
      await expect(upstreamFromKubeconfig()).rejects.toThrow(/not running in a cluster/);
    } finally {
      if (saved.host !== undefined) process.env.KUBERNETES_SERVICE_HOST = saved.host;
      if (saved.port !== undefined) process.env.KUBERNETES_SERVICE_PORT = saved.port;
    }
  });
});
