// --rotate-server-certificates against a minimal certificates API (test/src/csr-support.ts): what
// the CertificateSigningRequest asks for, waiting for approval, keeping the certificate in --cert-dir
// and reusing it, denial, and renewal at 75–85% of a short lifetime; then startPoolview end to end.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startPoolview } from '../../src/app.js';
import { CERT_FILE_NAME, renewalTime, splitPem, startCertificateManager } from '../../src/certificate-manager.js';
import { parseServingPair, ServingCertificate, type CertificateSource } from '../../src/serving-cert.js';
import { upstreamFromUrl, type KubeUpstream } from '../../src/upstream.js';
import { FakeCsrApi, memoryLogger, TestCa } from './csr-support.js';
import { noViews, waitFor } from './proxy-harness.js';

let ca: TestCa;
let api: FakeCsrApi;
let upstream: KubeUpstream;
const dirs: string[] = [];
const sources: CertificateSource[] = [];

beforeAll(async () => {
  ca = new TestCa();
  api = await new FakeCsrApi(ca).start();
  upstream = upstreamFromUrl(api.url);
});
afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
  api.onCreate = () => {};
});
afterAll(async () => {
  await upstream.close();
  await api.close();
  for (const d of [ca.dir, ...dirs]) rmSync(d, { recursive: true, force: true });
});

function certDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'poolview-certdir-'));
  dirs.push(d);
  return d;
}

function start(dir: string, opts: { retryDelayMs?: (n: number) => number; random?: () => number } = {}) {
  const { log, lines } = memoryLogger();
  const serving = new ServingCertificate(log);
  const source = startCertificateManager({ upstream, nodeName: 'edge-1', certDir: dir, serving, log, retryDelayMs: opts.retryDelayMs ?? (() => 50), random: opts.random });
  sources.push(source);
  return { serving, source, lines };
}

const newCsrs = (before: Set<string>) => [...api.csrs.keys()].filter((n) => !before.has(n));

describe('renewalTime', () => {
  it('is 75–85% into the lifetime, by the jitter', () => {
    const pair = { notBefore: 1_000_000, notAfter: 1_000_000 + 100_000 };
    expect(renewalTime(pair, () => 0)).toBe(1_075_000);
    expect(renewalTime(pair, () => 0.5)).toBe(1_080_000);
    expect(renewalTime(pair, () => 0.999999)).toBeCloseTo(1_085_000, -1);
  });
});

describe('startCertificateManager', () => {
  it('asks kubelet-serving for CN=system:node:<node>, O=system:nodes and the node\'s names; serves once approved', async () => {
    const dir = certDir();
    const before = new Set(api.csrs.keys());
    const { serving, source, lines } = start(dir);
    await waitFor(() => newCsrs(before).length === 1, 5_000, 'a CSR');
    const [name] = newCsrs(before);
    expect(name).toMatch(/^poolview-edge-1-[0-9a-f]{6}$/);
    const csr = api.csrs.get(name!)!;
    expect(csr.spec.signerName).toBe('kubernetes.io/kubelet-serving');
    expect([...csr.spec.usages].sort()).toEqual(['digital signature', 'key encipherment', 'server auth']);
    const text = execFileSync('openssl', ['req', '-noout', '-text', '-verify'], { input: api.request(name!), stdio: ['pipe', 'pipe', 'pipe'] }).toString();
    expect(text).toContain('Subject: O = system:nodes, CN = system:node:edge-1');
    expect(text).toContain('DNS:edge-1, DNS:localhost, DNS:edge-1.example, IP Address:127.0.0.1, IP Address:10.1.2.3');

    // Pending: said in the log (with the command to approve) and in readiness.
    await waitFor(() => lines().some((l) => l.msg === `waiting for approval: kubectl certificate approve ${name}`), 5_000, 'the waiting line');
    expect(source.check()).toEqual({ name: 'serving-certificate', ok: false, detail: `waiting for approval of CertificateSigningRequest ${name}` });
    expect(serving.current).toBeUndefined();

    api.approve(name!);
    const pair = await serving.ready();
    expect(pair.x509.subject).toBe('O=system:nodes\nCN=system:node:edge-1');
    expect(source.check()).toEqual({ name: 'serving-certificate', ok: true });
    // Kept in --cert-dir: certificate and key in one file, 0600.
    const file = join(dir, CERT_FILE_NAME);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const kept = splitPem(readFileSync(file, 'utf8'));
    expect(parseServingPair(kept.cert, kept.key).x509.serialNumber).toBe(pair.x509.serialNumber);
    expect(JSON.stringify(lines())).not.toContain('PRIVATE KEY');

    // A second start with the same --cert-dir reuses it: no new CSR.
    await source.stop();
    const count = api.csrs.size;
    const again = start(dir);
    await again.serving.ready();
    expect(again.serving.current!.x509.serialNumber).toBe(pair.x509.serialNumber);
    // Settled on the kept certificate: the next request is its renewal.
    await waitFor(() => again.lines().some((l) => l.msg === 'serving certificate renewal scheduled'), 5_000, 'the renewal to be scheduled');
    expect(api.csrs.size).toBe(count);
  });

  it('requests anew when the kept certificate lacks a name the node has now', async () => {
    const dir = certDir();
    const before = new Set(api.csrs.keys());
    api.onCreate = (csr) => api.approve(csr.metadata.name);
    const first = start(dir);
    await first.serving.ready();
    await first.source.stop();
    api.nodeAddresses = [...api.nodeAddresses, { type: 'InternalIP', address: '10.9.9.9' }];
    try {
      const second = start(dir);
      await waitFor(() => second.serving.current?.x509.subjectAltName?.includes('10.9.9.9') === true, 5_000, 'a certificate naming 10.9.9.9');
      expect(newCsrs(before)).toHaveLength(2);
    } finally {
      api.nodeAddresses = api.nodeAddresses.filter((a) => a.address !== '10.9.9.9');
    }
  });

  it('a denied request: a clear error, readiness says why, and a new request after the retry delay', async () => {
    const before = new Set(api.csrs.keys());
    const { serving, source, lines } = start(certDir(), { retryDelayMs: () => 300 });
    await waitFor(() => newCsrs(before).length === 1, 5_000, 'a CSR');
    const [name] = newCsrs(before);
    api.deny(name!, 'NotThisNode', 'CN does not match the requester');
    await waitFor(() => lines().some((l) => l.level === 50), 5_000, 'an error line');
    const error = lines().find((l) => l.level === 50)!;
    expect(error.msg).toBe(`CertificateSigningRequest ${name} was denied: NotThisNode: CN does not match the requester; requesting again later`);
    expect(source.check()).toMatchObject({ ok: false, detail: expect.stringContaining('was denied') });
    expect(serving.current).toBeUndefined();
    await waitFor(() => newCsrs(before).length === 2, 5_000, 'a second CSR');
    api.approve(newCsrs(before)[1]!);
    await serving.ready();
  });

  it('renews at 75–85% of a short lifetime', async () => {
    // The first certificate lives 10 s, 6 s of which have passed: renewal due in 1.5–2.5 s.
    let issued = 0;
    api.onCreate = (csr) => {
      issued++;
      api.approve(csr.metadata.name, issued === 1 ? { notBefore: Date.now() - 6_000, notAfter: Date.now() + 4_000 } : {});
    };
    const { serving, lines } = start(certDir(), { random: () => 0.5 });
    const first = await serving.ready();
    const due = renewalTime(first, () => 0.5);
    expect(due - Date.now()).toBeLessThan(3_000);
    const t0 = Date.now();
    await waitFor(() => serving.current !== first, 8_000, 'the renewed certificate');
    const renewedAt = Date.now();
    expect(renewedAt).toBeGreaterThanOrEqual(due - 1_000); // the signer's whole-second validity rounds
    expect(serving.current!.notAfter - serving.current!.notBefore).toBeGreaterThan(3600_000);
    expect(lines().map((l) => l.msg)).toEqual(expect.arrayContaining(['serving certificate renewal scheduled', 'renewing the serving certificate', 'serving certificate rotated']));
    console.log(`[certificate-manager] renewal of a 10 s certificate: due at 80%, served ${renewedAt - due} ms after (waited ${renewedAt - t0} ms)`);
  });
});

describe('startPoolview --rotate-server-certificates', () => {
  it('serves plain and health at once; the secure port opens when the certificate is issued', async () => {
    const before = new Set(api.csrs.keys());
    const { log } = memoryLogger();
    const pv = await startPoolview(
      { nodeName: 'edge-1', port: 0, healthPort: 0, securePort: 0, rotateServerCertificates: true, certDir: certDir() },
      { upstream, logger: log, startViews: noViews },
    );
    try {
      expect(pv.secureUrl).toBeUndefined();
      expect((await fetch(`${pv.healthUrl}/healthz`)).status).toBe(200);
      await waitFor(() => newCsrs(before).length === 1, 5_000, 'a CSR');
      const ready = await fetch(`${pv.healthUrl}/readyz?verbose`);
      expect(ready.status).toBe(500);
      expect(await ready.text()).toContain(`[-]serving-certificate failed: waiting for approval of CertificateSigningRequest ${newCsrs(before)[0]}`);
      const t0 = Date.now();
      api.approve(newCsrs(before)[0]!);
      const url = await pv.secureReady!;
      console.log(`[certificate-manager] approval → secure port serving: ${Date.now() - t0} ms`);
      expect(pv.secureUrl).toBe(url);
      const cn = await new Promise<string>((resolve, reject) => {
        const socket = connect({ host: '127.0.0.1', port: Number(new URL(url).port), ca: ca.pem, servername: 'localhost' }, () => {
          resolve(String(socket.getPeerCertificate().subject.CN));
          socket.end();
        });
        socket.on('error', reject);
      });
      expect(cn).toBe('system:node:edge-1');
      expect(await (await fetch(`${pv.healthUrl}/readyz?verbose`)).text()).toContain('[+]serving-certificate ok');
    } finally {
      await pv.close();
    }
  });

  it('closes cleanly while still waiting for approval', async () => {
    const before = new Set(api.csrs.keys());
    const { log, lines } = memoryLogger();
    const pv = await startPoolview(
      { nodeName: 'edge-1', port: 0, healthPort: 0, securePort: 0, rotateServerCertificates: true, certDir: certDir() },
      { upstream, logger: log, startViews: noViews },
    );
    // Waiting: the request exists and poolview watches it.
    await waitFor(() => newCsrs(before).length === 1 && api.watching(newCsrs(before)[0]!) === 1, 5_000, 'a watched CSR');
    const [name] = newCsrs(before);
    const t0 = Date.now();
    await pv.close();
    expect(Date.now() - t0).toBeLessThan(5_000); // a generous bound: closing does not wait for approval
    // The watch on the request is gone, both ports are closed, nothing failed.
    await waitFor(() => api.watching(name!) === 0, 5_000, 'the CSR watch to close');
    await expect(fetch(`${pv.healthUrl}/healthz`)).rejects.toThrow();
    await expect(fetch(`${pv.url}/healthz`)).rejects.toThrow();
    expect(pv.secureUrl).toBeUndefined();
    expect(lines().filter((l) => (l.level as number) >= 50)).toEqual([]);
    // Approval after the close opens nothing and asks for nothing more.
    api.approve(name!);
    expect(newCsrs(before)).toEqual([name]);
    expect(pv.secureUrl).toBeUndefined();
  });
});
