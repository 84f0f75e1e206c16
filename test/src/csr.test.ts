// The hand-written PKCS#10 encoder: openssl verifies the signature and reads back the subject and
// subjectAltNames the kubelet-serving signer checks; a CA signs it into a certificate for the key.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createCertificateRequest, ipBytes } from '../../src/csr.js';
import { parseServingPair } from '../../src/serving-cert.js';
import { TestCa } from './csr-support.js';

const dir = mkdtempSync(join(tmpdir(), 'poolview-csr-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `openssl req -in F -noout -verify -text`: stdout and stderr together (the verdict goes to stderr on some versions). */
function opensslReq(pem: string): string {
  const file = join(dir, `r-${Math.random().toString(36).slice(2)}.csr`);
  writeFileSync(file, pem);
  return execFileSync('sh', ['-c', `openssl req -in "${file}" -noout -verify -text 2>&1`]).toString();
}

describe('createCertificateRequest', () => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spec = {
    commonName: 'system:node:edge-1',
    organization: 'system:nodes',
    dnsNames: ['edge-1', 'localhost', 'edge-1.example'],
    ipAddresses: ['127.0.0.1', '10.1.2.3', '::1', 'fd00:10::2a'],
  };
  const pem = createCertificateRequest(spec, privateKey);

  it('is a PEM CERTIFICATE REQUEST that openssl verifies, with the subject and SANs asked for', () => {
    expect(pem).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n([A-Za-z0-9+/=]{1,64}\n)+-----END CERTIFICATE REQUEST-----\n$/);
    const text = opensslReq(pem);
    expect(text).toMatch(/verify OK/);
    expect(text).not.toMatch(/verify failure|unable to load/i);
    expect(text).toContain('Subject: O = system:nodes, CN = system:node:edge-1');
    expect(text).toContain('Public Key Algorithm: id-ecPublicKey');
    expect(text).toContain('NIST CURVE: P-256');
    expect(text).toContain('Requested Extensions:');
    expect(text).toContain(
      'DNS:edge-1, DNS:localhost, DNS:edge-1.example, IP Address:127.0.0.1, IP Address:10.1.2.3, IP Address:0:0:0:0:0:0:0:1, IP Address:FD00:10:0:0:0:0:0:2A',
    );
    expect(text).toContain('Signature Algorithm: ecdsa-with-SHA256');
  });

  it('a tampered request fails verification', () => {
    const der = Buffer.from(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s/g, ''), 'base64');
    const at = der.indexOf(Buffer.from('edge-1.example'));
    der[at] = 'E'.charCodeAt(0); // same length, another name: the signature no longer matches
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE REQUEST-----\n`;
    expect(opensslReq(tampered)).toMatch(/verify failure|signature.*fail|bad signature/i);
  });

  it('without SANs and organization: CN only, an empty attribute set', () => {
    const text = opensslReq(createCertificateRequest({ commonName: 'plain' }, privateKey));
    expect(text).toMatch(/verify OK/);
    expect(text).toContain('Subject: CN = plain');
    expect(text).toMatch(/Attributes:\s+\(none\)/);
    expect(text).not.toContain('DNS:');
  });

  it('a CA signs it into a certificate for the same key, with the requested names', () => {
    const ca = new TestCa();
    try {
      const cert = ca.sign(pem);
      const x509 = new X509Certificate(cert);
      expect(x509.subject).toBe('O=system:nodes\nCN=system:node:edge-1');
      expect(x509.subjectAltName).toContain('DNS:edge-1.example');
      expect(x509.subjectAltName).toContain('IP Address:10.1.2.3');
      expect(x509.verify(new X509Certificate(ca.pem).publicKey)).toBe(true);
      const pair = parseServingPair(Buffer.from(cert), Buffer.from(privateKey.export({ type: 'pkcs8', format: 'pem' }) as string));
      expect(pair.notAfter).toBeGreaterThan(Date.now());
    } finally {
      rmSync(ca.dir, { recursive: true, force: true });
    }
  });

  it('refuses keys other than ECDSA P-256', () => {
    const { privateKey: rsa } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const { privateKey: p384 } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    expect(() => createCertificateRequest({ commonName: 'x' }, rsa)).toThrow(/P-256/);
    expect(() => createCertificateRequest({ commonName: 'x' }, p384)).toThrow(/P-256/);
  });

  it('a long subject and many SANs use long-form DER lengths', () => {
    const many = Array.from({ length: 40 }, (_, i) => `name-${i}.${'x'.repeat(40)}.example`);
    const text = opensslReq(createCertificateRequest({ commonName: `system:node:${'n'.repeat(60)}`, organization: 'system:nodes', dnsNames: many }, privateKey));
    expect(text).toMatch(/verify OK/);
    expect(text).toContain(`DNS:${many[39]}`);
  });
});

describe('ipBytes', () => {
  it.each([
    ['127.0.0.1', '7f000001'],
    ['10.1.2.3', '0a010203'],
    ['::1', '00000000000000000000000000000001'],
    ['::', '00000000000000000000000000000000'],
    ['fd00:10::2a', 'fd00001000000000000000000000002a'],
    ['2001:db8:0:0:1:0:0:1', '20010db8000000000001000000000001'],
    ['fe80::1%eth0', 'fe800000000000000000000000000001'],
    ['::ffff:192.0.2.1', '00000000000000000000ffffc0000201'],
    ['0:0:0:0:0:0:0:1', '00000000000000000000000000000001'],
  ])('%s', (ip, hex) => {
    expect(ipBytes(ip).toString('hex')).toBe(hex);
  });

  it('refuses a name', () => {
    expect(() => ipBytes('localhost')).toThrow(/not an IP/);
  });
});
