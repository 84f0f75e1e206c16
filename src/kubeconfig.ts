// A kubeconfig file or the in-cluster environment, turned into what poolview needs to reach the
// apiserver as itself: the server URL, TLS material and an Authorization header. Credentials are
// re-readable: client certificates and token files rotate on disk, exec credentials expire.
// Follows kubectl (client-go clientcmd) semantics for the fields a node agent's kubeconfig uses and
// refuses the rest with a clear message. Our own code rather than the Kubernetes JavaScript client:
// importing that costs ~77 MiB of RSS, against poolview's 100 MiB budget on an edge node.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse } from 'yaml';

/** The configuration cannot be used; the message is one line, fit for the CLI. */
export class KubeconfigError extends Error {
  override name = 'KubeconfigError';
}

export interface Credentials {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  servername?: string;
  insecure: boolean;
  /** The Authorization header poolview presents as itself, if any. */
  authorization?: string;
}

export interface ApiserverConfig {
  /** For messages: "kubeconfig <path>" or "in-cluster config". */
  where: string;
  server: string;
  /** Reads credentials afresh; an exec plugin runs again only when its credential is about to expire. */
  read(): Promise<Credentials>;
}

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
const EXEC_API_VERSIONS = ['client.authentication.k8s.io/v1', 'client.authentication.k8s.io/v1beta1'];
/** Credentials are re-read every 30 s: renewing a minute early keeps an expired one from being sent. */
const RENEW_BEFORE_EXPIRY_MS = 60_000;
/** A plugin that hangs must not hang poolview's boot. */
const EXEC_TIMEOUT_MS = 60_000;

type Obj = Record<string, unknown>;

/**
 * Scalars stay strings (as sigs.k8s.io/yaml keeps them for kubeconfig's string fields): a token of
 * digits or a password "yes" must not turn into a number or a boolean. Only null is resolved.
 */
const YAML_OPTIONS = { customTags: (tags: Array<{ tag: string }>) => tags.filter((t) => !/:(bool|int|float)$/.test(t.tag)) } as never;

function firstLine(text: string): string {
  return text.split('\n')[0].trim();
}

function errorText(err: unknown): string {
  return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : firstLine(err instanceof Error ? err.message : String(err));
}

function readFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new KubeconfigError(`cannot read ${what} ${path}: ${errorText(err)}`);
  }
}

/** A bearer token file, re-read on every refresh (bound service-account tokens rotate). */
function readToken(path: string): string {
  const token = readFile(path, 'token file').toString('utf8').trim();
  if (token === '') throw new KubeconfigError(`token file ${path} is empty`);
  return token;
}

/** Typed access to the parsed document; a wrong shape is reported as "<where> is not valid: ...". */
class Fields {
  constructor(
    private readonly where: string,
    private readonly label: string,
    readonly obj: Obj,
  ) {}

  private invalid(what: string): KubeconfigError {
    return new KubeconfigError(`${this.where} is not valid: ${this.label}${what}`);
  }

  str(key: string): string | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') throw this.invalid(`${key} must be a string`);
    return v;
  }

  bool(key: string): boolean {
    const v = this.str(key);
    if (v === undefined) return false;
    // YAML 1.1 spellings too: kubectl's YAML library reads them as booleans.
    if (/^(true|yes|on|y)$/i.test(v)) return true;
    if (/^(false|no|off|n)$/i.test(v)) return false;
    throw this.invalid(`${key} must be true or false`);
  }

  /** base64 data, e.g. certificate-authority-data. */
  data(key: string): Buffer | undefined {
    const v = this.str(key)?.replace(/\s+/g, '');
    if (v === undefined) return undefined;
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length % 4 === 1) throw this.invalid(`${key} is not base64`);
    return Buffer.from(v, 'base64');
  }

  list(key: string): unknown[] {
    const v = this.obj[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) throw this.invalid(`${key} must be a list`);
    return v;
  }

  object(key: string, label = `${key}: `): Fields | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) throw this.invalid(`${key} must be a mapping`);
    return new Fields(this.where, label, v as Obj);
  }

  /** The `field` mapping of the entry called `name` in the list `key` (clusters, users, contexts). */
  named(key: string, field: string, name: string): Fields | undefined {
    for (const [i, item] of this.list(key).entries()) {
      if (typeof item !== 'object' || item === null || Array.isArray(item)) throw this.invalid(`${key}[${i}] must be a mapping`);
      const entry = new Fields(this.where, `${key}[${i}].`, item as Obj);
      const label = `${field} "${name}": `;
      if (entry.str('name') === name) return entry.object(field, label) ?? new Fields(this.where, label, {});
    }
    return undefined;
  }
}

/**
 * A kubeconfig file's current context, or the context named by `context` (kubectl's --context).
 * Paths in it are relative to the file's directory.
 */
export function kubeconfigFromFile(path: string, context?: string): ApiserverConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new KubeconfigError(`cannot read kubeconfig ${path}: ${errorText(err)}`);
  }
  const where = `kubeconfig ${path}`;
  let doc: unknown;
  try {
    doc = parse(text, YAML_OPTIONS);
  } catch (err) {
    // First line only: YAML errors carry a source excerpt the one-line CLI error must not.
    throw new KubeconfigError(`${where} is not valid: ${errorText(err)}`);
  }
  if (doc !== null && (typeof doc !== 'object' || Array.isArray(doc))) throw new KubeconfigError(`${where} is not valid: not a mapping`);
  return fromDocument(new Fields(where, '', (doc ?? {}) as Obj), where, dirname(resolve(path)), context);
}

function fromDocument(doc: Fields, where: string, dir: string, contextOverride: string | undefined): ApiserverConfig {
  const refuse = (what: string) => new KubeconfigError(`${where}: ${what}`);
  const path = (p: string | undefined) => (p === undefined ? undefined : resolve(dir, p));

  const contextName = contextOverride ?? doc.str('current-context') ?? '';
  const context = contextName ? doc.named('contexts', 'context', contextName) : undefined;
  // As kubectl: a --context the file does not define is an error, not a fallback to the current one.
  if (contextOverride !== undefined && !context) throw refuse(`context "${contextOverride}" does not exist`);
  const clusterName = context?.str('cluster');
  const cluster = clusterName ? doc.named('clusters', 'cluster', clusterName) : undefined;
  if (!cluster) throw refuse(`${contextOverride === undefined ? 'current ' : ''}context "${contextName}" names no cluster`);
  const userName = context?.str('user');
  const user = userName ? doc.named('users', 'user', userName) : new Fields(where, '', {});
  // A misspelt user must not quietly make poolview anonymous.
  if (!user) throw refuse(`current context "${contextName}" names user "${userName}", which the kubeconfig does not define`);

  const server = cluster.str('server');
  if (!server) throw refuse(`cluster "${clusterName}" has no server`);
  if (cluster.str('proxy-url')) throw refuse('proxy-url is not supported');
  const caFile = path(cluster.str('certificate-authority'));
  const caData = cluster.data('certificate-authority-data');
  const insecure = cluster.bool('insecure-skip-tls-verify');
  const servername = cluster.str('tls-server-name');
  if (caFile && caData) throw refuse(`cluster "${clusterName}" sets both certificate-authority and certificate-authority-data`);
  if (insecure && (caFile || caData)) {
    throw refuse(`cluster "${clusterName}" sets a certificate authority and insecure-skip-tls-verify; choose one`);
  }

  const u = `user "${userName}"`;
  const authProvider = user.object('auth-provider');
  if (authProvider) throw refuse(`${u}: auth-provider "${authProvider.str('name') ?? ''}" is not supported; use an exec plugin`);
  for (const key of ['as', 'as-uid', 'as-groups', 'as-user-extra']) {
    if (user.obj[key] !== undefined && user.obj[key] !== null) throw refuse(`${u}: impersonation (${key}) is not supported`);
  }
  const certFile = path(user.str('client-certificate'));
  const certData = user.data('client-certificate-data');
  const keyFile = path(user.str('client-key'));
  const keyData = user.data('client-key-data');
  if (certFile && certData) throw refuse(`${u} sets both client-certificate and client-certificate-data`);
  if (keyFile && keyData) throw refuse(`${u} sets both client-key and client-key-data`);
  if (!!(certFile || certData) !== !!(keyFile || keyData)) throw refuse(`${u} needs both a client certificate and its key`);
  const token = user.str('token');
  const tokenFile = path(user.str('tokenFile'));
  const username = user.str('username');
  const password = user.str('password');
  if ((token || tokenFile) && (username || password)) throw refuse(`${u} sets both a token and a username/password; only one is allowed`);
  // As client-go: a token or password written in the kubeconfig wins over an exec plugin, which then
  // never runs; a client certificate written there wins over the plugin's.
  const staticHeader = !!(token || tokenFile || username || password);
  const staticCert = !!(certFile || certData);
  const exec = staticHeader ? undefined : execPlugin(user, where, u, dir, { server, servername, insecure, caFile, caData });

  return {
    where,
    server,
    async read() {
      const creds: Credentials = {
        ca: caData ?? (caFile ? readFile(caFile, 'certificate-authority') : undefined),
        cert: certData ?? (certFile ? readFile(certFile, 'client-certificate') : undefined),
        key: keyData ?? (keyFile ? readFile(keyFile, 'client-key') : undefined),
        servername,
        insecure,
      };
      // tokenFile over token: client-go re-reads the file and uses it once read.
      if (tokenFile) creds.authorization = `Bearer ${readToken(tokenFile)}`;
      else if (token) creds.authorization = `Bearer ${token}`;
      else if (username || password) creds.authorization = `Basic ${Buffer.from(`${username ?? ''}:${password ?? ''}`).toString('base64')}`;
      if (exec) {
        const got = await exec();
        if (got.token) creds.authorization = `Bearer ${got.token}`;
        if (got.cert && !staticCert) Object.assign(creds, { cert: got.cert, key: got.key });
      }
      return creds;
    },
  };
}

/** The in-cluster config: the service host and port from the environment, the pod's service-account files. */
export function inClusterConfig(env: NodeJS.ProcessEnv = process.env, dir: string = SERVICE_ACCOUNT_DIR): ApiserverConfig {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) throw new KubeconfigError('not running in a cluster (KUBERNETES_SERVICE_HOST/PORT unset)');
  return {
    where: 'in-cluster config',
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    async read() {
      return {
        ca: readFile(join(dir, 'ca.crt'), 'service-account CA'),
        insecure: false,
        authorization: `Bearer ${readToken(join(dir, 'token'))}`,
      };
    },
  };
}

interface ExecCredential {
  token?: string;
  cert?: Buffer;
  key?: Buffer;
  /** ms since the epoch; none: valid until poolview restarts. */
  expiresAt?: number;
}

interface ClusterInfo {
  server: string;
  servername?: string;
  insecure: boolean;
  caFile?: string;
  caData?: Buffer;
}

/** The user's exec plugin, if any: a function returning its credential, cached until it expires. */
function execPlugin(
  user: Fields,
  where: string,
  u: string,
  dir: string,
  cluster: ClusterInfo,
): (() => Promise<ExecCredential>) | undefined {
  const exec = user.object('exec', `${u} exec: `);
  if (!exec) return undefined;
  const refuse = (what: string) => new KubeconfigError(`${where}: ${u} exec plugin: ${what}`);
  const apiVersion = exec.str('apiVersion');
  if (!apiVersion || !EXEC_API_VERSIONS.includes(apiVersion)) {
    throw refuse(`apiVersion "${apiVersion ?? ''}" is not supported (use ${EXEC_API_VERSIONS.join(' or ')})`);
  }
  let command = exec.str('command');
  if (!command) throw refuse('no command');
  // As kubectl: a command with a slash is a path relative to the kubeconfig; a bare name is looked up in PATH.
  if (command.includes('/') && !isAbsolute(command)) command = resolve(dir, command);
  const args = exec.list('args').map((a) => {
    if (typeof a !== 'string') throw refuse('args must be strings');
    return a;
  });
  const env: Record<string, string> = {};
  for (const e of exec.list('env')) {
    const { name, value } = (e ?? {}) as Obj;
    if (typeof name !== 'string' || name === '') throw refuse('an env entry has no name');
    env[name] = value == null ? '' : String(value);
  }
  // v1 makes the plugin's author say whether it may prompt; poolview has no terminal to prompt on.
  const interactiveMode = exec.str('interactiveMode') ?? (apiVersion.endsWith('/v1') ? undefined : 'IfAvailable');
  if (interactiveMode === undefined) throw refuse('interactiveMode must be set for apiVersion client.authentication.k8s.io/v1');
  if (interactiveMode === 'Always') throw refuse('interactiveMode Always needs a terminal, and poolview has none');
  if (interactiveMode !== 'Never' && interactiveMode !== 'IfAvailable') {
    throw refuse(`interactiveMode "${interactiveMode}" is not Never, IfAvailable or Always`);
  }
  const installHint = exec.str('installHint');
  const provideClusterInfo = exec.bool('provideClusterInfo');

  let cached: ExecCredential | undefined;
  return async () => {
    if (cached && (cached.expiresAt === undefined || cached.expiresAt - Date.now() > RENEW_BEFORE_EXPIRY_MS)) return cached;
    const spec: Obj = { interactive: false };
    if (provideClusterInfo) {
      const ca = cluster.caData ?? (cluster.caFile ? readFile(cluster.caFile, 'certificate-authority') : undefined);
      spec.cluster = {
        server: cluster.server,
        ...(cluster.servername ? { 'tls-server-name': cluster.servername } : {}),
        ...(cluster.insecure ? { 'insecure-skip-tls-verify': true } : {}),
        ...(ca ? { 'certificate-authority-data': ca.toString('base64') } : {}),
      };
    }
    const info = JSON.stringify({ apiVersion, kind: 'ExecCredential', spec });
    const stdout = await run(command, args, { ...process.env, ...env, KUBERNETES_EXEC_INFO: info }, installHint);
    cached = parseExecCredential(stdout, apiVersion, (what) => new KubeconfigError(`exec plugin ${command} ${what}`));
    return cached;
  };
}

/** Runs a plugin without stdin; resolves with its stdout, rejects with the first line of its stderr. */
function run(command: string, args: string[], env: NodeJS.ProcessEnv, installHint: string | undefined): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, EXEC_TIMEOUT_MS);
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const hint = installHint ? `; ${firstLine(installHint)}` : '';
      const why = e.code === 'ENOENT' ? `not found${hint}` : `cannot run: ${firstLine(e.message)}`;
      reject(new KubeconfigError(`exec plugin ${command} ${why}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolvePromise(Buffer.concat(out).toString('utf8'));
      const stderr = firstLine(Buffer.concat(err).toString('utf8').trim());
      const how = timedOut
        ? `did not finish within ${EXEC_TIMEOUT_MS / 1000} s`
        : `failed (${signal ? `signal ${signal}` : `exit code ${code}`})`;
      reject(new KubeconfigError(`exec plugin ${command} ${how}${stderr ? `: ${stderr}` : ''}`));
    });
  });
}

function parseExecCredential(stdout: string, apiVersion: string, invalid: (what: string) => KubeconfigError): ExecCredential {
  let out: Obj;
  try {
    out = JSON.parse(stdout) as Obj;
  } catch {
    throw invalid('did not print an ExecCredential (not JSON)');
  }
  if (typeof out !== 'object' || out === null || out.kind !== 'ExecCredential') throw invalid('did not print an ExecCredential');
  if (out.apiVersion !== apiVersion) throw invalid(`printed apiVersion "${String(out.apiVersion)}", configured for "${apiVersion}"`);
  const status = out.status as Obj | undefined;
  if (typeof status !== 'object' || status === null) throw invalid('printed no status');
  const str = (key: string) => (typeof status[key] === 'string' && status[key] !== '' ? (status[key] as string) : undefined);
  const token = str('token');
  const cert = str('clientCertificateData');
  const key = str('clientKeyData');
  if (!!cert !== !!key) throw invalid('printed a client certificate or key, not both');
  if (!token && !cert) throw invalid('printed neither a token nor a client certificate and key');
  let expiresAt: number | undefined;
  const expiration = str('expirationTimestamp');
  if (expiration !== undefined) {
    expiresAt = Date.parse(expiration);
    if (Number.isNaN(expiresAt)) throw invalid(`printed expirationTimestamp "${expiration}", not a time`);
  }
  // PEM text, not base64: the "Data" in the names is the Go type []byte's.
  return { token, cert: cert ? Buffer.from(cert) : undefined, key: key ? Buffer.from(key) : undefined, expiresAt };
}
