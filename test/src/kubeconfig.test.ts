// Reading a kubeconfig or the in-cluster environment: kubectl's semantics for the fields a node agent
// uses, credentials re-read on every refresh, one-line errors for what poolview refuses.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inClusterConfig, KubeconfigError, kubeconfigFromFile } from '../../src/kubeconfig.js';

let dir: string;
const file = (name: string) => join(dir, name);
const b64 = (text: string) => Buffer.from(text).toString('base64');

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'poolview-kubeconfig-'));
  mkdirSync(file('pki'));
  writeFileSync(file('pki/ca.crt'), 'CA PEM');
  writeFileSync(file('pki/client.crt'), 'CERT PEM');
  writeFileSync(file('pki/client.key'), 'KEY PEM');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A kubeconfig with one cluster, one user and a current context naming both (JSON is YAML). */
function kubeconfig(name: string, user: Record<string, unknown>, cluster: Record<string, unknown> = {}): string {
  writeFileSync(
    file(name),
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'other', cluster: { server: 'https://wrong:1' } }, { name: 'c', cluster: { server: 'https://10.0.0.1:6443', ...cluster } }],
      users: [{ name: 'u', user }],
      contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'ctx',
    }),
  );
  return file(name);
}

/** An exec plugin: a node script that records its input in `<name>.log` (one JSON line a run) and prints `status`. */
function plugin(name: string, status: unknown, opts: { exit?: number; stderr?: string; apiVersion?: string } = {}): string {
  const path = file(`${name}.mjs`);
  writeFileSync(
    path,
    [
      `import { appendFileSync } from 'node:fs';`,
      `appendFileSync(${JSON.stringify(file(`${name}.log`))}, JSON.stringify({ argv: process.argv.slice(2), info: JSON.parse(process.env.KUBERNETES_EXEC_INFO), extra: process.env.EXTRA }) + '\\n');`,
      opts.stderr ? `console.error(${JSON.stringify(opts.stderr)});` : '',
      `console.log(JSON.stringify({ apiVersion: ${JSON.stringify(opts.apiVersion ?? 'client.authentication.k8s.io/v1')}, kind: 'ExecCredential', status: ${JSON.stringify(status)} }));`,
      `process.exit(${opts.exit ?? 0});`,
    ].join('\n'),
  );
  return path;
}
const runs = (name: string) => readFileSync(file(`${name}.log`), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const execUser = (script: string, more: Record<string, unknown> = {}) => ({
  exec: { apiVersion: 'client.authentication.k8s.io/v1', command: process.execPath, args: [script], interactiveMode: 'Never', ...more },
});

describe('a kubeconfig file', () => {
  it('resolves paths relative to the kubeconfig\'s directory and reads the current context\'s cluster and user', async () => {
    mkdirSync(file('rel'));
    const config = kubeconfigFromFile(
      kubeconfig('rel/config', { 'client-certificate': '../pki/client.crt', 'client-key': '../pki/client.key', token: 'tok' }, { 'certificate-authority': '../pki/ca.crt', 'tls-server-name': 'kubernetes' }),
    );
    expect(config.server).toBe('https://10.0.0.1:6443');
    expect(config.where).toBe(`kubeconfig ${file('rel/config')}`);
    const creds = await config.read();
    expect(creds).toMatchObject({ servername: 'kubernetes', insecure: false, authorization: 'Bearer tok' });
    expect([creds.ca?.toString(), creds.cert?.toString(), creds.key?.toString()]).toEqual(['CA PEM', 'CERT PEM', 'KEY PEM']);
  });

  it('reads the context named by --context instead of the current one, and refuses one it does not define', async () => {
    const path = file('contexts');
    writeFileSync(
      path,
      JSON.stringify({
        clusters: [{ name: 'a', cluster: { server: 'https://a:6443' } }, { name: 'b', cluster: { server: 'https://b:6443' } }],
        users: [{ name: 'ua', user: { token: 'ta' } }, { name: 'ub', user: { token: 'tb' } }],
        contexts: [{ name: 'ca', context: { cluster: 'a', user: 'ua' } }, { name: 'cb', context: { cluster: 'b', user: 'ub' } }],
        'current-context': 'ca',
      }),
    );
    expect(kubeconfigFromFile(path).server).toBe('https://a:6443');
    const other = kubeconfigFromFile(path, 'cb');
    expect(other.server).toBe('https://b:6443');
    expect((await other.read()).authorization).toBe('Bearer tb');
    expect(() => kubeconfigFromFile(path, 'nope')).toThrow(new KubeconfigError(`kubeconfig ${path}: context "nope" does not exist`));
  });

  it('takes base64 data fields and insecure-skip-tls-verify', async () => {
    const creds = await kubeconfigFromFile(
      kubeconfig('data', { 'client-certificate-data': b64('CERT DATA'), 'client-key-data': b64('KEY DATA') }, { 'insecure-skip-tls-verify': true }),
    ).read();
    expect([creds.insecure, creds.ca, creds.authorization]).toEqual([true, undefined, undefined]);
    expect([creds.cert?.toString(), creds.key?.toString()]).toEqual(['CERT DATA', 'KEY DATA']);
    const withCa = await kubeconfigFromFile(kubeconfig('data-ca', {}, { 'certificate-authority-data': b64('CA DATA') })).read();
    expect(withCa.ca?.toString()).toBe('CA DATA');
  });

  it('re-reads a token file on every read (projected tokens rotate)', async () => {
    writeFileSync(file('token'), 'first\n');
    const config = kubeconfigFromFile(kubeconfig('tokenfile', { tokenFile: 'token' }));
    expect((await config.read()).authorization).toBe('Bearer first');
    writeFileSync(file('token'), 'second');
    expect((await config.read()).authorization).toBe('Bearer second');
  });

  it('re-reads client certificate files on every read (kubelet-style rotation)', async () => {
    writeFileSync(file('rot.crt'), 'old cert');
    writeFileSync(file('rot.key'), 'old key');
    const config = kubeconfigFromFile(kubeconfig('rotating', { 'client-certificate': 'rot.crt', 'client-key': 'rot.key' }));
    expect((await config.read()).cert?.toString()).toBe('old cert');
    writeFileSync(file('rot.crt'), 'new cert');
    expect((await config.read()).cert?.toString()).toBe('new cert');
  });

  it('sends username and password as Basic', async () => {
    const creds = await kubeconfigFromFile(kubeconfig('basic', { username: 'admin', password: 's3cret' })).read();
    expect(creds.authorization).toBe(`Basic ${b64('admin:s3cret')}`);
  });

  it('keeps YAML scalars as written: a token of digits stays a string, with leading zeros', async () => {
    writeFileSync(
      file('yaml'),
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters:',
        '- name: c',
        '  cluster:',
        '    server: https://[fd00::1]:6443',
        '    insecure-skip-tls-verify: yes',
        'users:',
        '- name: u',
        '  user:',
        '    token: 0123',
        'contexts:',
        '- name: ctx',
        '  context: {cluster: c, user: u}',
        'current-context: ctx',
        '',
      ].join('\n'),
    );
    const config = kubeconfigFromFile(file('yaml'));
    expect(config.server).toBe('https://[fd00::1]:6443');
    expect(await config.read()).toMatchObject({ insecure: true, authorization: 'Bearer 0123' });
  });

  it('a context without a user is anonymous', async () => {
    writeFileSync(file('anon'), JSON.stringify({ clusters: [{ name: 'c', cluster: { server: 'http://127.0.0.1:8080' } }], contexts: [{ name: 'x', context: { cluster: 'c' } }], 'current-context': 'x' }));
    const creds = await kubeconfigFromFile(file('anon')).read();
    expect([creds.authorization, creds.cert]).toEqual([undefined, undefined]);
  });
});

describe('an exec credential plugin', () => {
  it('gets the ExecCredential spec in KUBERNETES_EXEC_INFO, its args and env; its token is kept until it expires', async () => {
    const script = plugin('lasting', { token: 'from-exec', expirationTimestamp: new Date(Date.now() + 3600_000).toISOString() });
    const config = kubeconfigFromFile(kubeconfig('exec-lasting', execUser(script, { args: [script, '--flag'], env: [{ name: 'EXTRA', value: 'x' }] })));
    expect((await config.read()).authorization).toBe('Bearer from-exec');
    expect((await config.read()).authorization).toBe('Bearer from-exec');
    expect(runs('lasting')).toEqual([
      { argv: ['--flag'], info: { apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', spec: { interactive: false } }, extra: 'x' },
    ]);
  });

  it('runs again once the credential is about to expire', async () => {
    const script = plugin('expiring', { token: 't', expirationTimestamp: new Date(Date.now() + 5_000).toISOString() });
    const config = kubeconfigFromFile(kubeconfig('exec-expiring', execUser(script)));
    await config.read();
    await config.read();
    expect(runs('expiring')).toHaveLength(2);
  });

  it('returns a client certificate and key (v1beta1, interactiveMode defaulted), with cluster info when asked', async () => {
    const script = plugin('certs', { clientCertificateData: 'EXEC CERT', clientKeyData: 'EXEC KEY' }, { apiVersion: 'client.authentication.k8s.io/v1beta1' });
    const config = kubeconfigFromFile(
      kubeconfig(
        'exec-certs',
        { exec: { apiVersion: 'client.authentication.k8s.io/v1beta1', command: process.execPath, args: [script], provideClusterInfo: true } },
        { 'certificate-authority': 'pki/ca.crt', 'tls-server-name': 'kubernetes' },
      ),
    );
    const creds = await config.read();
    expect([creds.cert?.toString(), creds.key?.toString(), creds.authorization]).toEqual(['EXEC CERT', 'EXEC KEY', undefined]);
    expect(runs('certs')[0].info.spec).toEqual({
      interactive: false,
      cluster: { server: 'https://10.0.0.1:6443', 'tls-server-name': 'kubernetes', 'certificate-authority-data': b64('CA PEM') },
    });
  });

  it('resolves a command with a slash against the kubeconfig\'s directory', async () => {
    mkdirSync(file('bin'));
    writeFileSync(file('bin/get-token'), `#!/bin/sh\necho '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"relative"}}'\n`);
    chmodSync(file('bin/get-token'), 0o755);
    const config = kubeconfigFromFile(kubeconfig('exec-relative', { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: './bin/get-token', interactiveMode: 'IfAvailable' } }));
    expect((await config.read()).authorization).toBe('Bearer relative');
  });

  it('is not run when the kubeconfig has a token of its own; gives way to its client certificate (as client-go)', async () => {
    const config = kubeconfigFromFile(kubeconfig('exec-shadowed', { token: 'static', ...execUser('/nonexistent/plugin') }));
    expect((await config.read()).authorization).toBe('Bearer static');
    const script = plugin('both', { token: 'exec-token', clientCertificateData: 'EXEC CERT', clientKeyData: 'EXEC KEY' });
    const withCert = await kubeconfigFromFile(kubeconfig('exec-cert', { 'client-certificate': 'pki/client.crt', 'client-key': 'pki/client.key', ...execUser(script) })).read();
    expect([withCert.authorization, withCert.cert?.toString()]).toEqual(['Bearer exec-token', 'CERT PEM']);
  });

  it.each([
    ['fails: the first line of its stderr', () => execUser(plugin('failing', {}, { exit: 3, stderr: 'token expired, run login\nmore detail' })), /^exec plugin .* failed \(exit code 3\): token expired, run login$/],
    ['is not installed: the install hint', () => ({ exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'poolview-no-such-plugin', interactiveMode: 'Never', installHint: 'install it with apt\nsecond line' } }), /^exec plugin poolview-no-such-plugin not found; install it with apt$/],
    ['prints another apiVersion', () => execUser(plugin('v1beta1', { token: 't' }, { apiVersion: 'client.authentication.k8s.io/v1beta1' })), /printed apiVersion "client.authentication.k8s.io\/v1beta1", configured for "client.authentication.k8s.io\/v1"/],
    ['prints a certificate without a key', () => execUser(plugin('half', { clientCertificateData: 'C' })), /a client certificate or key, not both/],
    ['prints no credential', () => execUser(plugin('empty', {})), /neither a token nor a client certificate/],
  ])('explains a plugin that %s', async (_what, user, message) => {
    const err = await kubeconfigFromFile(kubeconfig('exec-error', user())).read().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeconfigError);
    expect((err as Error).message).toMatch(message);
  });
});

describe('the in-cluster config', () => {
  it('reads the service host and port, the CA and the token, re-reading the token (bound tokens rotate)', async () => {
    const sa = file('sa');
    mkdirSync(sa);
    writeFileSync(join(sa, 'ca.crt'), 'CLUSTER CA');
    writeFileSync(join(sa, 'token'), 'bound-1');
    const config = inClusterConfig({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, sa);
    expect(config).toMatchObject({ server: 'https://10.96.0.1:443', where: 'in-cluster config' });
    const first = await config.read();
    expect([first.ca?.toString(), first.authorization, first.insecure]).toEqual(['CLUSTER CA', 'Bearer bound-1', false]);
    writeFileSync(join(sa, 'token'), 'bound-2');
    expect((await config.read()).authorization).toBe('Bearer bound-2');
  });

  it('puts an IPv6 service host in brackets', () => {
    expect(inClusterConfig({ KUBERNETES_SERVICE_HOST: 'fd00:10:96::1', KUBERNETES_SERVICE_PORT: '443' }, dir).server).toBe('https://[fd00:10:96::1]:443');
  });

  it('explains a missing environment or service-account file', async () => {
    expect(() => inClusterConfig({}, dir)).toThrow(/not running in a cluster/);
    await expect(inClusterConfig({ KUBERNETES_SERVICE_HOST: 'h', KUBERNETES_SERVICE_PORT: '1' }, file('nowhere')).read()).rejects.toThrow(
      `cannot read service-account CA ${file('nowhere/ca.crt')}: no such file`,
    );
  });
});

describe('what poolview refuses, in one line', () => {
  const refused: Array<[string, () => string, RegExp]> = [
    ['an auth-provider', () => kubeconfig('ap', { 'auth-provider': { name: 'oidc', config: {} } }), /: user "u": auth-provider "oidc" is not supported; use an exec plugin$/],
    ['a proxy-url', () => kubeconfig('proxy', {}, { 'proxy-url': 'http://proxy:3128' }), /: proxy-url is not supported$/],
    ['impersonation', () => kubeconfig('as', { token: 't', as: 'admin' }), /impersonation \(as\) is not supported/],
    ['a user the kubeconfig does not define', () => (writeFileSync(file('nouser'), JSON.stringify({ clusters: [{ name: 'c', cluster: { server: 'https://h' } }], contexts: [{ name: 'x', context: { cluster: 'c', user: 'ghost' } }], 'current-context': 'x' })), file('nouser')), /current context "x" names user "ghost", which the kubeconfig does not define/],
    ['a current context that does not exist', () => (writeFileSync(file('noctx'), 'current-context: missing\n'), file('noctx')), /current context "missing" names no cluster/],
    ['a cluster without a server', () => kubeconfig('noserver', {}, { server: '' }), /cluster "c" has no server/],
    ['a CA with insecure-skip-tls-verify', () => kubeconfig('ca-insecure', {}, { 'certificate-authority': 'pki/ca.crt', 'insecure-skip-tls-verify': true }), /sets a certificate authority and insecure-skip-tls-verify/],
    ['a CA file and CA data', () => kubeconfig('ca-both', {}, { 'certificate-authority': 'pki/ca.crt', 'certificate-authority-data': b64('x') }), /both certificate-authority and certificate-authority-data/],
    ['a certificate without a key', () => kubeconfig('nokey', { 'client-certificate': 'pki/client.crt' }), /needs both a client certificate and its key/],
    ['a token and a password', () => kubeconfig('two-methods', { token: 't', username: 'a', password: 'b' }), /both a token and a username\/password/],
    ['data that is not base64', () => kubeconfig('bad-b64', { 'client-certificate-data': 'not base64!', 'client-key-data': b64('k') }), /is not valid: user "u": client-certificate-data is not base64/],
    ['a boolean that is not one', () => kubeconfig('bad-bool', {}, { 'insecure-skip-tls-verify': 'maybe' }), /insecure-skip-tls-verify must be true or false/],
    ['a field of the wrong type', () => kubeconfig('bad-type', { token: ['a'] }), /is not valid: user "u": token must be a string/],
    ['an exec apiVersion it does not know', () => kubeconfig('exec-alpha', { exec: { apiVersion: 'client.authentication.k8s.io/v1alpha1', command: 'x' } }), /apiVersion "client.authentication.k8s.io\/v1alpha1" is not supported/],
    ['a v1 exec plugin without interactiveMode', () => kubeconfig('exec-nomode', { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'x' } }), /interactiveMode must be set/],
    ['an exec plugin that always needs a terminal', () => kubeconfig('exec-always', { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'x', interactiveMode: 'Always' } }), /needs a terminal/],
    ['a file that is not YAML', () => (writeFileSync(file('notyaml'), 'clusters: [\n'), file('notyaml')), /^kubeconfig .*notyaml is not valid: Flow sequence/],
  ];
  it.each(refused)('%s', (_what, path, message) => {
    let err: unknown;
    try {
      kubeconfigFromFile(path());
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KubeconfigError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).not.toContain('\n');
  });

  it('a missing file', () => {
    expect(() => kubeconfigFromFile(file('absent'))).toThrow(`cannot read kubeconfig ${file('absent')}: no such file`);
  });

  it('a missing token file, when reading credentials', async () => {
    await expect(kubeconfigFromFile(kubeconfig('notokenfile', { tokenFile: 'gone' })).read()).rejects.toThrow(`cannot read token file ${file('gone')}: no such file`);
  });
});
