// --rotate-server-certificates: the serving certificate comes from the CertificateSigningRequest API,
// as yurt-hub's and the kubelet's do. poolview generates an ECDSA P-256 key, asks signer
// kubernetes.io/kubelet-serving (kube-controller-manager signs with the cluster CA, so in-cluster
// clients verify it with their ca.crt) for CN=system:node:<node>, O=system:nodes and the node's
// names and addresses, waits until an approver approved it and the signer issued it, keeps it in
// --cert-dir across restarts and renews it when about 80% of its lifetime has passed.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { request } from 'undici';
import type { Logger } from 'pino';
import type { Upstream } from './types.js';
import { createCertificateRequest, ipBytes } from './csr.js';
import { jsonLines } from './json-lines.js';
import { parseServingPair, type CertificateSource, type ServingCertificate, type ServingPair } from './serving-cert.js';

export const KUBELET_SERVING_SIGNER = 'kubernetes.io/kubelet-serving';
/** The one file in --cert-dir: certificate then key, PEM, mode 0600, replaced atomically. */
export const CERT_FILE_NAME = 'poolview-serving-current.pem';
const CSR_PATH = '/apis/certificates.k8s.io/v1/certificatesigningrequests';
/**
 * The kubelet-serving signer takes these with or without "key encipherment"; yurt-manager's
 * csrapprover approves a kubelet-serving request only with all three, so ask for all three.
 */
const USAGES = ['digital signature', 'key encipherment', 'server auth'];

export interface SubjectAltNames {
  dnsNames: string[];
  ipAddresses: string[];
}

/** When to renew: 75–85% of the lifetime (jittered so a fleet issued together does not renew together). */
export function renewalTime(pair: Pick<ServingPair, 'notBefore' | 'notAfter'>, random: () => number = Math.random): number {
  return pair.notBefore + (pair.notAfter - pair.notBefore) * (0.75 + 0.1 * random());
}

/** True when the certificate names every wanted DNS name and IP address. */
export function coversNames(pair: ServingPair, wanted: SubjectAltNames): boolean {
  const dns = new Set<string>();
  const ips = new Set<string>();
  for (const entry of (pair.x509.subjectAltName ?? '').split(', ')) {
    if (entry.startsWith('DNS:')) dns.add(entry.slice(4).toLowerCase());
    else if (entry.startsWith('IP Address:')) ips.add(ipBytes(entry.slice(11)).toString('hex'));
  }
  return wanted.dnsNames.every((d) => dns.has(d.toLowerCase())) && wanted.ipAddresses.every((ip) => ips.has(ipBytes(ip).toString('hex')));
}

/** True when the certificate's subject is CN=system:node:<node>. */
function isForNode(pair: ServingPair, nodeName: string): boolean {
  return pair.x509.subject.split('\n').includes(`CN=system:node:${nodeName}`);
}

/** Certificate(s) and private key from one PEM file. */
export function splitPem(pem: string): { cert: Buffer; key: Buffer } {
  const blocks = pem.match(/-----BEGIN ([A-Z ]+)-----[\s\S]+?-----END \1-----\n?/g) ?? [];
  const cert = blocks.filter((b) => b.startsWith('-----BEGIN CERTIFICATE-----')).join('');
  const key = blocks.find((b) => /^-----BEGIN (EC |RSA )?PRIVATE KEY-----/.test(b)) ?? '';
  return { cert: Buffer.from(cert), key: Buffer.from(key) };
}

/** Writes `content` to `path` through a temporary file and a rename: readers see the old file or the new one. */
function writeAtomically(path: string, content: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, content, { mode: 0o600 });
  renameSync(tmp, path);
}

class CsrRefused extends Error {
  override name = 'CsrRefused';
}

export interface CertificateManagerOptions {
  upstream: Upstream;
  nodeName: string;
  certDir: string;
  serving: ServingCertificate;
  log: Logger;
  /** More names to put in the certificate (e.g. a specific --bind-address). */
  extraNames?: SubjectAltNames;
  /** spec.expirationSeconds of the requests (the signer's --cluster-signing-duration caps it, 600 is its floor). */
  expirationSeconds?: number;
  /** Delay before the n-th retry (n ≥ 1) after a failed or refused request. */
  retryDelayMs?: (attempt: number) => number;
  random?: () => number;
}

const defaultRetryDelay = (attempt: number) => Math.min(10_000 * 2 ** (attempt - 1), 10 * 60_000);
/** setTimeout's limit is about 24.8 days; longer waits are taken in steps. */
const MAX_TIMER_MS = 24 * 3600_000;

/** Starts getting and renewing the serving certificate in the background. */
export function startCertificateManager(opts: CertificateManagerOptions): CertificateSource {
  const { upstream, nodeName, certDir, serving, log } = opts;
  const file = join(certDir, CERT_FILE_NAME);
  const abort = new AbortController();
  const random = opts.random ?? Math.random;
  let state = 'starting';

  const api = async (method: 'GET' | 'POST', path: string, body?: unknown) => {
    const res = await request(new URL(path, upstream.url), {
      method,
      dispatcher: upstream.ownDispatcher,
      headers: {
        accept: 'application/json',
        'user-agent': 'poolview',
        ...(body ? { 'content-type': 'application/json' } : {}),
        ...upstream.ownHeaders(),
      },
      body: body ? JSON.stringify(body) : undefined,
      signal: abort.signal,
    });
    return res;
  };

  const json = async <T>(res: Awaited<ReturnType<typeof api>>, what: string): Promise<T> => {
    const text = await res.body.text();
    if (res.statusCode < 200 || res.statusCode > 299) {
      let message = text.slice(0, 300);
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? message;
      } catch {
        // not a Status
      }
      throw new Error(`${what}: ${res.statusCode} ${message}`);
    }
    return JSON.parse(text) as T;
  };

  /** The node's names and addresses (as the kubelet puts them in its serving certificate), localhost, and extras. */
  const wantedNames = async (): Promise<SubjectAltNames> => {
    const names = new Set<string>([nodeName, 'localhost', '127.0.0.1', ...(opts.extraNames?.dnsNames ?? []), ...(opts.extraNames?.ipAddresses ?? [])]);
    try {
      // A list by name: the read-only ClusterRole grants list, not get, on nodes.
      const list = await json<{ items: { status?: { addresses?: { type: string; address: string }[] } }[] }>(
        await api('GET', `/api/v1/nodes?fieldSelector=${encodeURIComponent(`metadata.name=${nodeName}`)}`),
        `list Node ${nodeName}`,
      );
      for (const a of list.items[0]?.status?.addresses ?? []) names.add(a.address);
    } catch (err) {
      if (abort.signal.aborted) throw err;
      log.warn({ err: (err as Error).message, node: nodeName }, 'cannot read the Node for its addresses; the serving certificate names only the node name and loopback');
    }
    const all = [...names].filter((n) => n !== '');
    return { dnsNames: all.filter((n) => isIP(n) === 0), ipAddresses: all.filter((n) => isIP(n) !== 0) };
  };

  /** The pair kept in --cert-dir, if it is for this node, names everything wanted and has not expired. */
  const fromCertDir = (wanted: SubjectAltNames): ServingPair | undefined => {
    let pem: string;
    try {
      pem = readFileSync(file, 'utf8');
    } catch {
      return undefined;
    }
    try {
      const { cert, key } = splitPem(pem);
      const pair = parseServingPair(cert, key);
      if (!isForNode(pair, nodeName)) throw new Error(`it is not for system:node:${nodeName}`);
      if (!coversNames(pair, wanted)) throw new Error(`it does not name all of ${[...wanted.dnsNames, ...wanted.ipAddresses].join(', ')}`);
      return pair;
    } catch (err) {
      log.info({ file, reason: (err as Error).message }, 'not using the certificate kept in --cert-dir; requesting a new one');
      return undefined;
    }
  };

  /** Waits until the CSR is issued (returns the certificate) or refused (throws CsrRefused). */
  const waitForCertificate = async (name: string, resourceVersion: string): Promise<Buffer> => {
    type Csr = { metadata: { resourceVersion: string }; status?: { certificate?: string; conditions?: { type: string; status: string; reason?: string; message?: string }[] } };
    const decide = (csr: Csr): Buffer | undefined => {
      const conditions = csr.status?.conditions ?? [];
      for (const type of ['Denied', 'Failed']) {
        const c = conditions.find((c) => c.type === type && c.status !== 'False');
        if (c) throw new CsrRefused(`CertificateSigningRequest ${name} was ${type.toLowerCase()}: ${[c.reason, c.message].filter(Boolean).join(': ') || 'no reason given'}`);
      }
      const approved = conditions.some((c) => c.type === 'Approved' && c.status !== 'False');
      return approved && csr.status?.certificate ? Buffer.from(csr.status.certificate, 'base64') : undefined;
    };
    let rv = resourceVersion;
    for (let round = 0; ; round++) {
      if (round > 0) {
        // Catch up by GET after each watch ends: nothing is missed, even across a 410.
        const csr = await json<Csr>(await api('GET', `${CSR_PATH}/${name}`), `get CertificateSigningRequest ${name}`).catch((err: Error) => {
          if (/: 404 /.test(err.message)) throw new CsrRefused(`CertificateSigningRequest ${name} was deleted before it was issued`);
          throw err;
        });
        const cert = decide(csr);
        if (cert) return cert;
        rv = csr.metadata.resourceVersion;
        log.info({ csr: name }, `still waiting for approval: kubectl certificate approve ${name}`);
      }
      const query = new URLSearchParams({ watch: '1', fieldSelector: `metadata.name=${name}`, resourceVersion: rv, timeoutSeconds: '300' });
      const res = await api('GET', `${CSR_PATH}?${query}`);
      if (res.statusCode !== 200) {
        await json(res, `watch CertificateSigningRequest ${name}`).catch((err: Error) => log.warn({ csr: name, err: err.message }, 'watch of the CertificateSigningRequest failed; retrying'));
        await sleep(2_000, abort.signal);
        continue;
      }
      for await (const line of jsonLines(res.body)) {
        const event = JSON.parse(line) as { type: string; object: Csr };
        if (event.type === 'DELETED') throw new CsrRefused(`CertificateSigningRequest ${name} was deleted before it was issued`);
        if (event.type !== 'ADDED' && event.type !== 'MODIFIED') break; // ERROR (e.g. 410): re-GET
        const cert = decide(event.object);
        if (cert) {
          res.body.destroy();
          return cert;
        }
      }
    }
  };

  /** Creates a CSR with a new key and waits for its certificate. */
  const requestCertificate = async (names: SubjectAltNames): Promise<ServingPair> => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const csrPem = createCertificateRequest({ commonName: `system:node:${nodeName}`, organization: 'system:nodes', ...names }, privateKey);
    const name = `poolview-${nodeName}-${randomBytes(3).toString('hex')}`.slice(0, 253);
    const created = await json<{ metadata: { resourceVersion: string } }>(
      await api('POST', CSR_PATH, {
        apiVersion: 'certificates.k8s.io/v1',
        kind: 'CertificateSigningRequest',
        metadata: { name, labels: { 'app.kubernetes.io/name': 'poolview' } },
        spec: {
          request: Buffer.from(csrPem).toString('base64'),
          signerName: KUBELET_SERVING_SIGNER,
          usages: USAGES,
          ...(opts.expirationSeconds ? { expirationSeconds: opts.expirationSeconds } : {}),
        },
      }),
      'create CertificateSigningRequest',
    );
    state = `waiting for approval of CertificateSigningRequest ${name}`;
    log.info({ csr: name, signer: KUBELET_SERVING_SIGNER, dnsNames: names.dnsNames, ipAddresses: names.ipAddresses }, `waiting for approval: kubectl certificate approve ${name}`);
    const cert = await waitForCertificate(name, created.metadata.resourceVersion);
    const key = privateKey.export({ type: 'pkcs8', format: 'pem' });
    const pair = parseServingPair(cert, Buffer.from(key));
    log.info({ csr: name }, 'CertificateSigningRequest issued');
    return pair;
  };

  const run = async () => {
    let attempt = 0;
    // One renewal time per certificate: a retry after a failed renewal does not draw a new one.
    let renewal: { pair: ServingPair; at: number } | undefined;
    for (;;) {
      try {
        let names = await wantedNames();
        if (!serving.current) {
          const kept = fromCertDir(names);
          if (kept) serving.set(kept, file);
        }
        const current = serving.current;
        // A certificate that lacks a name the node has now (a new address) is replaced at once.
        if (current && coversNames(current, names)) {
          if (renewal?.pair !== current) {
            renewal = { pair: current, at: renewalTime(current, random) };
            log.info({ renewAt: new Date(renewal.at).toISOString() }, 'serving certificate renewal scheduled');
          }
          const { at } = renewal;
          state = 'serving';
          while (Date.now() < at) await sleep(Math.min(at - Date.now(), MAX_TIMER_MS), abort.signal);
          log.info({ notAfter: new Date(current.notAfter).toISOString() }, 'renewing the serving certificate');
          names = await wantedNames();
        }
        const pair = await requestCertificate(names);
        mkdirSync(certDir, { recursive: true, mode: 0o700 });
        writeAtomically(file, pair.cert.toString() + (pair.cert.toString().endsWith('\n') ? '' : '\n') + pair.key.toString());
        serving.set(pair, 'CertificateSigningRequest');
        attempt = 0;
      } catch (err) {
        if (abort.signal.aborted) return;
        attempt++;
        const delay = (opts.retryDelayMs ?? defaultRetryDelay)(attempt);
        const message = (err as Error).message;
        state = message;
        if (err instanceof CsrRefused) log.error({ retryInMs: delay }, `${message}; requesting again later`);
        else log.warn({ err: message, retryInMs: delay }, 'cannot get a serving certificate; retrying');
        await sleep(delay, abort.signal).catch(() => {});
        if (abort.signal.aborted) return;
      }
    }
  };
  const running = run();

  return {
    check: () => {
      const pair = serving.current;
      if (pair && pair.notAfter > Date.now()) return { name: 'serving-certificate', ok: true };
      return { name: 'serving-certificate', ok: false, detail: pair ? `certificate expired at ${pair.x509.validTo}; ${state}` : state };
    },
    stop: async () => {
      abort.abort();
      await running;
    },
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
