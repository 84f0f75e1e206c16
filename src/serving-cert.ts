// The serving certificate of the secure port: one holder that every source (files on disk, or
// certificates issued through the CertificateSigningRequest API) hands checked pairs to, and that
// swaps them into the HTTPS server without a restart (tls.Server#setSecureContext).
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { Server as TlsServer } from 'node:tls';
import type { Logger } from 'pino';
import type { ServingCertificateMetrics } from './metrics.js';
import { UsageError } from './options.js';

/** A certificate (PEM, leaf first) with its private key, checked by parseServingPair. */
export interface ServingPair {
  cert: Buffer;
  key: Buffer;
  x509: X509Certificate;
  notBefore: number;
  notAfter: number;
}

/** Parses a PEM certificate and key; throws with the reason unless they belong together and the certificate has not expired. */
export function parseServingPair(cert: Buffer, key: Buffer, now = Date.now()): ServingPair {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new Error(`certificate does not parse: ${(err as Error).message}`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new Error(`private key does not parse: ${(err as Error).message}`);
  }
  if (!x509.checkPrivateKey(privateKey)) throw new Error('private key does not match the certificate');
  const notBefore = Date.parse(x509.validFrom);
  const notAfter = Date.parse(x509.validTo);
  if (!(notAfter > now)) throw new Error(`certificate expired at ${x509.validTo}`);
  return { cert, key, x509, notBefore, notAfter };
}

/** What to log of a certificate (never the key). */
export function describeCertificate(pair: ServingPair): Record<string, string> {
  return {
    subject: pair.x509.subject.replace(/\n/g, ', '),
    serial: pair.x509.serialNumber,
    notAfter: new Date(pair.notAfter).toISOString(),
    sans: pair.x509.subjectAltName ?? '',
  };
}

/** Holds the pair being served and applies every new one to the HTTPS servers using it. */
export class ServingCertificate {
  private pair: ServingPair | undefined;
  private readonly servers = new Set<TlsServer>();
  private readonly waiters: Array<(pair: ServingPair) => void> = [];

  constructor(
    private readonly log: Logger,
    private readonly metrics?: ServingCertificateMetrics,
  ) {
    metrics?.setSource(() => this.pair);
  }

  get current(): ServingPair | undefined {
    return this.pair;
  }

  /** Resolves with the first pair (at once when there is one). */
  ready(): Promise<ServingPair> {
    return this.pair ? Promise.resolve(this.pair) : new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Serves `pair` from now on: new TLS handshakes get it, open connections keep theirs. */
  set(pair: ServingPair, how: string): void {
    const first = this.pair === undefined;
    this.pair = pair;
    for (const server of this.servers) server.setSecureContext({ cert: pair.cert, key: pair.key });
    this.metrics?.rotations.inc();
    this.log.info({ ...describeCertificate(pair), source: how }, first ? 'serving certificate loaded' : 'serving certificate rotated');
    for (const resolve of this.waiters.splice(0)) resolve(pair);
  }

  /** Keeps `server` on the current pair from now on. */
  use(server: TlsServer): void {
    this.servers.add(server);
    server.once('close', () => this.servers.delete(server));
  }
}

/** Stops a certificate source; check() is its readiness as the /readyz check "serving-certificate". */
export interface CertificateSource {
  check(): { name: string; ok: boolean; detail?: string };
  stop(): Promise<void> | void;
}

function readOrThrow(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UsageError(`cannot read ${flag} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** inode, mtime and size of both files: a Secret volume's symlink swap changes the inode. */
function fingerprint(paths: string[]): string {
  return paths
    .map((p) => {
      try {
        const s = statSync(p);
        return `${s.ino}:${s.mtimeMs}:${s.size}`;
      } catch (err) {
        return (err as NodeJS.ErrnoException).code ?? 'error';
      }
    })
    .join('|');
}

export interface CertificateFilesOptions {
  certFile: string;
  keyFile: string;
  serving: ServingCertificate;
  log: Logger;
  /** How often the files are checked for a change (polling survives symlink swaps fs.watch misses). */
  intervalMs?: number;
}

/**
 * Loads --tls-cert-file/--tls-private-key-file now (a missing or bad pair at start is a UsageError)
 * and reloads them whenever they change. A pair that does not check out is logged and skipped: the
 * current one keeps serving until a good pair appears (e.g. the other half of a two-file write).
 */
export function watchCertificateFiles(opts: CertificateFilesOptions): CertificateSource {
  const { certFile, keyFile, serving, log } = opts;
  const paths = [certFile, keyFile];
  let seen = fingerprint(paths);
  const cert = readOrThrow(certFile, '--tls-cert-file');
  const key = readOrThrow(keyFile, '--tls-private-key-file');
  try {
    serving.set(parseServingPair(cert, key), certFile);
  } catch (err) {
    throw new UsageError(`--tls-cert-file ${certFile} with --tls-private-key-file ${keyFile}: ${(err as Error).message}`);
  }
  let problem: string | undefined;

  const poll = () => {
    const now = fingerprint(paths);
    if (now === seen) return;
    seen = now;
    try {
      const pair = parseServingPair(readFileSync(certFile), readFileSync(keyFile));
      problem = undefined;
      const current = serving.current;
      if (current && current.cert.equals(pair.cert) && current.key.equals(pair.key)) return;
      serving.set(pair, certFile);
    } catch (err) {
      problem = (err as Error).message;
      log.warn({ certFile, keyFile, reason: problem }, 'serving certificate files changed but do not form a valid pair; keeping the current certificate');
    }
  };
  const timer = setInterval(poll, opts.intervalMs ?? 5_000);
  timer.unref();
  return {
    check: () => {
      const pair = serving.current!;
      if (pair.notAfter <= Date.now()) return { name: 'serving-certificate', ok: false, detail: `certificate expired at ${pair.x509.validTo}${problem ? `; ${problem}` : ''}` };
      return { name: 'serving-certificate', ok: true };
    },
    stop: () => clearInterval(timer),
  };
}
