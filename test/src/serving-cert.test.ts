// Reloading --tls-cert-file/--tls-private-key-file: a real HTTPS server picks up a rewritten pair
// (seen over a TLS connection), a bad or half-written pair keeps the old certificate, and
// startPoolview wires it all to the secure port with the expiry metric.
import { mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPoolview } from '../../src/app.js';
import { Registry } from '../../src/metrics.js';
import { createServingCertificateMetrics } from '../../src/metrics.js';
import { parseServingPair, ServingCertificate, watchCertificateFiles } from '../../src/serving-cert.js';
import { upstreamFromUrl } from '../../src/upstream.js';
import { startFakeApiserver, type FakeApiserver } from '../fake/apiserver.js';
import { memoryLogger, TestCa } from './csr-support.js';
import { noViews, waitFor } from './proxy-harness.js';

let ca: TestCa;
let dir: string;
beforeAll(() => {
  ca = new TestCa();
  dir = mkdtempSync(join(tmpdir(), 'poolview-serving-'));
});
afterAll(() => {
  rmSync(ca.dir, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});

/** The CN of the certificate a TLS handshake with port gets (verified against the test CA). */
function servedCommonName(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca: ca.pem, servername: 'localhost' }, () => {
      const cn = socket.getPeerCertificate().subject.CN;
      socket.end();
      resolve(Array.isArray(cn) ? cn.join(',') : cn);
    });
    socket.on('error', reject);
  });
}

function write(path: string, text: string): void {
  // Through a rename, as a careful writer does; the half-written case below writes in place.
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

describe('parseServingPair', () => {
  it('takes a matching, unexpired pair; refuses garbage, a foreign key and an expired certificate', () => {
    const a = ca.issue('a');
    const b = ca.issue('b');
    const pair = parseServingPair(Buffer.from(a.cert), Buffer.from(a.key));
    expect(pair.x509.subject).toBe('CN=a');
    expect(pair.notAfter).toBeGreaterThan(Date.now());
    expect(() => parseServingPair(Buffer.from('nope'), Buffer.from(a.key))).toThrow(/certificate does not parse/);
    expect(() => parseServingPair(Buffer.from(a.cert), Buffer.from('nope'))).toThrow(/private key does not parse/);
    expect(() => parseServingPair(Buffer.from(a.cert), Buffer.from(b.key))).toThrow(/does not match/);
    const old = ca.issue('old', { notBefore: Date.now() - 7200_000, notAfter: Date.now() - 3600_000 });
    expect(() => parseServingPair(Buffer.from(old.cert), Buffer.from(old.key))).toThrow(/expired/);
  });
});

describe('watchCertificateFiles', () => {
  let server: Server;
  let port: number;
  const certFile = () => join(dir, 'tls.crt');
  const keyFile = () => join(dir, 'tls.key');
  const { log, lines } = memoryLogger();
  const registry = new Registry();
  const serving = new ServingCertificate(log, createServingCertificateMetrics(registry));
  let stop: () => void;

  beforeAll(async () => {
    const first = ca.issue('first');
    write(certFile(), first.cert);
    write(keyFile(), first.key);
    stop = watchCertificateFiles({ certFile: certFile(), keyFile: keyFile(), serving, log, intervalMs: 50 }).stop as () => void;
    server = createServer({ cert: serving.current!.cert, key: serving.current!.key }, (_req, res) => res.end('ok'));
    serving.use(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    stop();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('serves the new certificate after both files are rewritten, without a restart', async () => {
    expect(await servedCommonName(port)).toBe('first');
    const second = ca.issue('second');
    const t0 = Date.now();
    write(keyFile(), second.key);
    write(certFile(), second.cert);
    await waitFor(async () => (await servedCommonName(port)) === 'second', 5_000, 'the second certificate served');
    const latency = Date.now() - t0;
    console.log(`[serving-cert] file rewrite → new certificate served: ${latency} ms (poll interval 50 ms)`);
    const rotated = lines().find((l) => l.msg === 'serving certificate rotated');
    expect(rotated).toMatchObject({ subject: 'CN=second', serial: serving.current!.x509.serialNumber });
    expect(JSON.stringify(lines())).not.toContain('PRIVATE KEY');
  });

  it('a certificate without its key, a foreign key, garbage: warned, the old certificate stays', async () => {
    const third = ca.issue('third');
    const other = ca.issue('other');
    const before = lines().filter((l) => l.level === 40).length;
    const warnings = () => lines().filter((l) => l.level === 40).slice(before);
    // Half a rotation: the new certificate, the old key.
    write(certFile(), third.cert);
    await waitFor(() => warnings().length >= 1, 5_000, 'a warning');
    expect(warnings().at(-1)).toMatchObject({ reason: 'private key does not match the certificate' });
    expect(warnings().at(-1)!.msg).toMatch(/keeping the current certificate/);
    expect(await servedCommonName(port)).toBe('second');
    // A foreign key.
    write(keyFile(), other.key);
    await waitFor(() => warnings().length >= 2, 5_000, 'a second warning');
    expect(await servedCommonName(port)).toBe('second');
    // Written in place and cut short.
    writeFileSync(certFile(), third.cert.slice(0, 100));
    await waitFor(() => warnings().length >= 3, 5_000, 'a third warning');
    expect(warnings().at(-1)!.reason).toMatch(/certificate does not parse/);
    expect(await servedCommonName(port)).toBe('second');
    // The rest of the rotation arrives: served.
    write(certFile(), third.cert);
    write(keyFile(), third.key);
    await waitFor(async () => (await servedCommonName(port)) === 'third', 5_000, 'the third certificate served');
  });

  it('follows a Secret volume: ..data symlink swapped to a new directory', async () => {
    const vol = join(dir, 'secret');
    const version = (name: string, pair: { cert: string; key: string }) => {
      mkdirSync(join(vol, name), { recursive: true });
      writeFileSync(join(vol, name, 'tls.crt'), pair.cert);
      writeFileSync(join(vol, name, 'tls.key'), pair.key);
    };
    version('..v1', ca.issue('secret-v1'));
    symlinkSync('..v1', join(vol, '..data'));
    symlinkSync('..data/tls.crt', join(vol, 'tls.crt'));
    symlinkSync('..data/tls.key', join(vol, 'tls.key'));
    const { log: quiet } = memoryLogger();
    const holder = new ServingCertificate(quiet);
    const source = watchCertificateFiles({ certFile: join(vol, 'tls.crt'), keyFile: join(vol, 'tls.key'), serving: holder, log: quiet, intervalMs: 50 });
    try {
      expect(holder.current!.x509.subject).toBe('CN=secret-v1');
      version('..v2', ca.issue('secret-v2'));
      symlinkSync('..v2', join(vol, '..data_tmp'));
      renameSync(join(vol, '..data_tmp'), join(vol, '..data')); // the kubelet's atomic swap
      await waitFor(() => holder.current!.x509.subject === 'CN=secret-v2', 5_000, 'the swapped Secret loaded');
    } finally {
      await source.stop();
    }
  });

  it('exports seconds to expiry and counts rotations', async () => {
    const text = await registry.metrics();
    const expiry = Number(/^poolview_serving_certificate_expiry_seconds (\S+)$/m.exec(text)![1]);
    expect(expiry).toBeGreaterThan(23 * 3600);
    expect(expiry).toBeLessThanOrEqual(24 * 3600);
    expect(text).toMatch(/^poolview_serving_certificate_rotations_total 3$/m);
  });
});

describe('startPoolview with certificate files', () => {
  let fake: FakeApiserver;
  beforeAll(async () => {
    fake = await startFakeApiserver();
  });
  afterAll(() => fake.close());

  it('refuses a pair that does not belong together at start (exit 2 in the CLI)', async () => {
    const a = ca.issue('a');
    const b = ca.issue('b');
    writeFileSync(join(dir, 'a.crt'), a.cert);
    writeFileSync(join(dir, 'b.key'), b.key);
    await expect(
      startPoolview({ nodeName: 'n', port: 0, healthPort: 0, securePort: 0, tlsCertFile: join(dir, 'a.crt'), tlsPrivateKeyFile: join(dir, 'b.key') }, { upstream: upstreamFromUrl(fake.url), startViews: noViews }),
    ).rejects.toThrow(/--tls-cert-file .*a\.crt with --tls-private-key-file .*b\.key: private key does not match/);
  });

  it('reloads the secure port; /readyz and /metrics report the certificate', async () => {
    const files = join(dir, 'pv');
    mkdirSync(files);
    const cert = join(files, 'tls.crt');
    const key = join(files, 'tls.key');
    const one = ca.issue('pv-one');
    write(cert, one.cert);
    write(key, one.key);
    const upstream = upstreamFromUrl(fake.url);
    const { log } = memoryLogger();
    const pv = await startPoolview(
      { nodeName: 'n', port: 0, healthPort: 0, securePort: 0, tlsCertFile: cert, tlsPrivateKeyFile: key },
      { upstream, logger: log, startViews: noViews, certificateFilesIntervalMs: 50 },
    );
    try {
      const port = Number(new URL(pv.secureUrl!).port);
      expect(await pv.secureReady).toBe(pv.secureUrl);
      expect(await servedCommonName(port)).toBe('pv-one');
      const two = ca.issue('pv-two');
      write(key, two.key);
      write(cert, two.cert);
      await waitFor(async () => (await servedCommonName(port)) === 'pv-two', 5_000, 'pv-two served');
      const ready = await (await fetch(`${pv.healthUrl}/readyz?verbose`)).text();
      expect(ready).toContain('[+]serving-certificate ok');
      const metrics = await (await fetch(`${pv.healthUrl}/metrics`)).text();
      expect(metrics).toMatch(/^poolview_serving_certificate_rotations_total 2$/m);
      expect(metrics).toMatch(/^poolview_serving_certificate_expiry_seconds \d+/m);
    } finally {
      await pv.close();
      await upstream.close();
    }
  });
});
