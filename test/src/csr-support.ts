// Test support for serving certificates: a throwaway CA that signs with openssl (any validity window,
// past ones included), and a minimal certificates.k8s.io/v1 API (create, get, watch by name, approve,
// deny) plus the Node list the certificate manager reads for the node's addresses.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createCertificateRequest } from '../../src/csr.js';
import { createLogger, type Logger } from '../../src/log.js';

/** openssl "YYYYMMDDHHMMSSZ" */
const asn1Time = (ms: number) => new Date(ms).toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z');

export class TestCa {
  readonly dir = mkdtempSync(join(tmpdir(), 'poolview-test-ca-'));
  readonly certFile = join(this.dir, 'ca.crt');
  readonly keyFile = join(this.dir, 'ca.key');
  private n = 0;

  constructor(name = 'poolview-test-ca') {
    this.openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', this.keyFile, '-out', this.certFile,
      '-days', '2', '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature');
    mkdirSync(join(this.dir, 'issued'));
    writeFileSync(join(this.dir, 'index.txt'), '');
    writeFileSync(join(this.dir, 'serial'), '1000\n');
    writeFileSync(
      join(this.dir, 'ca.cnf'),
      [
        '[ca]', 'default_ca = test', '[test]', `dir = ${this.dir}`, 'database = $dir/index.txt', 'new_certs_dir = $dir/issued',
        'serial = $dir/serial', 'default_md = sha256', 'policy = any', 'copy_extensions = copy', 'unique_subject = no',
        'x509_extensions = serving', '[any]', 'commonName = supplied', 'organizationName = optional',
        '[serving]', 'basicConstraints = CA:FALSE', 'keyUsage = critical,digitalSignature,keyEncipherment', 'extendedKeyUsage = serverAuth', '',
      ].join('\n'),
    );
  }

  get pem(): Buffer {
    return readFileSync(this.certFile);
  }

  private openssl(...args: string[]): string {
    return execFileSync('openssl', args, { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  }

  /** Signs a PEM CSR (subject and subjectAltNames as requested), valid from notBefore to notAfter (ms). */
  sign(csrPem: string, validity: { notBefore?: number; notAfter?: number } = {}): string {
    const n = ++this.n;
    const csr = join(this.dir, `req-${n}.csr`);
    const out = join(this.dir, `req-${n}.crt`);
    writeFileSync(csr, csrPem);
    const notBefore = validity.notBefore ?? Date.now() - 60_000;
    const notAfter = validity.notAfter ?? Date.now() + 24 * 3600_000;
    this.openssl('ca', '-batch', '-config', join(this.dir, 'ca.cnf'), '-cert', this.certFile, '-keyfile', this.keyFile, '-preserveDN', '-notext',
      '-startdate', asn1Time(notBefore), '-enddate', asn1Time(notAfter), '-in', csr, '-out', out);
    return readFileSync(out, 'utf8');
  }

  /** A new ECDSA key and a certificate for CN=`commonName` with `sans` (127.0.0.1 and localhost by default). */
  issue(commonName: string, opts: { notBefore?: number; notAfter?: number; dnsNames?: string[]; ipAddresses?: string[] } = {}): { cert: string; key: string } {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const csr = createCertificateRequest({ commonName, dnsNames: opts.dnsNames ?? ['localhost'], ipAddresses: opts.ipAddresses ?? ['127.0.0.1'] }, privateKey);
    return { cert: this.sign(csr, opts), key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
  }
}

/** A pino logger whose lines the test can read. */
export function memoryLogger(level = 'info'): { log: Logger; lines: () => Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line.trim()) lines.push(JSON.parse(line));
      done();
    },
  });
  return { log: createLogger(level, sink), lines: () => lines };
}

export interface FakeCsr {
  apiVersion: string;
  kind: string;
  metadata: { name: string; resourceVersion: string; labels?: Record<string, string> };
  spec: { request: string; signerName: string; usages: string[]; expirationSeconds?: number };
  status: { certificate?: string; conditions?: Array<{ type: string; status: string; reason?: string; message?: string }> };
}

const CSR_PATH = '/apis/certificates.k8s.io/v1/certificatesigningrequests';

/** The certificates API as far as the certificate manager uses it; `onCreate` may approve at once. */
export class FakeCsrApi {
  readonly csrs = new Map<string, FakeCsr>();
  private rv = 100;
  private readonly watchers = new Set<{ name: string; res: ServerResponse }>();

  /** Watches open on one CertificateSigningRequest. */
  watching(name: string): number {
    return [...this.watchers].filter((w) => w.name === name).length;
  }
  private server!: Server;
  url = '';
  nodeAddresses: Array<{ type: string; address: string }> = [{ type: 'InternalIP', address: '10.1.2.3' }, { type: 'Hostname', address: 'edge-1.example' }];
  onCreate: (csr: FakeCsr) => void = () => {};

  constructor(readonly ca: TestCa) {}

  async start(): Promise<this> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    for (const w of this.watchers) w.res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** The PEM request of a CSR. */
  request(name: string): string {
    return Buffer.from(this.csrs.get(name)!.spec.request, 'base64').toString();
  }

  approve(name: string, validity: { notBefore?: number; notAfter?: number } = {}): void {
    const csr = this.csrs.get(name)!;
    csr.status.conditions = [...(csr.status.conditions ?? []), { type: 'Approved', status: 'True', reason: 'TestApproved', message: 'approved by the test' }];
    this.update(csr);
    csr.status.certificate = Buffer.from(this.ca.sign(this.request(name), validity)).toString('base64');
    this.update(csr);
  }

  deny(name: string, reason = 'TestDenied', message = 'not this one'): void {
    const csr = this.csrs.get(name)!;
    csr.status.conditions = [...(csr.status.conditions ?? []), { type: 'Denied', status: 'True', reason, message }];
    this.update(csr);
  }

  private update(csr: FakeCsr): void {
    csr.metadata.resourceVersion = String(++this.rv);
    for (const w of this.watchers) if (w.name === csr.metadata.name) w.res.write(JSON.stringify({ type: 'MODIFIED', object: csr }) + '\n');
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url!, 'http://x');
    const send = (code: number, body: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (url.pathname === '/readyz') return void res.end('ok');
    if (url.pathname === '/api/v1/nodes') {
      const name = url.searchParams.get('fieldSelector')?.replace('metadata.name=', '');
      return send(200, { kind: 'NodeList', items: [{ metadata: { name }, status: { addresses: this.nodeAddresses } }] });
    }
    if (url.pathname === CSR_PATH && req.method === 'POST') {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        const csr = JSON.parse(body) as FakeCsr;
        csr.metadata.resourceVersion = String(++this.rv);
        csr.status = {};
        this.csrs.set(csr.metadata.name, csr);
        send(201, csr);
        setImmediate(() => this.onCreate(csr));
      });
      return;
    }
    if (url.pathname === CSR_PATH && url.searchParams.get('watch') === '1') {
      const name = url.searchParams.get('fieldSelector')!.replace('metadata.name=', '');
      res.writeHead(200, { 'content-type': 'application/json' });
      const watcher = { name, res };
      this.watchers.add(watcher);
      res.on('close', () => this.watchers.delete(watcher));
      const csr = this.csrs.get(name);
      if (csr && Number(csr.metadata.resourceVersion) > Number(url.searchParams.get('resourceVersion'))) {
        res.write(JSON.stringify({ type: 'MODIFIED', object: csr }) + '\n');
      }
      return;
    }
    if (url.pathname.startsWith(`${CSR_PATH}/`)) {
      const csr = this.csrs.get(url.pathname.slice(CSR_PATH.length + 1));
      return csr ? send(200, csr) : send(404, { kind: 'Status', message: 'not found' });
    }
    send(404, { kind: 'Status', message: `no ${url.pathname}` });
  }
}
