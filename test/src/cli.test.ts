// The command line: help, one-line mistakes with exit code 2, environment twins, signals.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS, FLAGS, proxyHost, resolveOptions, type FlagSpec, type PoolviewOptions } from '../../src/options.js';
import { helpText, main, parseServeArgs, type CliIO } from '../../src/cli.js';
import { startFakeApiserver, type FakeApiserver } from '../fake/apiserver.js';
import { waitFor } from './proxy-harness.js';

const root = join(import.meta.dirname, '../..');

async function run(argv: string[], env: Record<string, string | undefined> = {}, stopSignal?: CliIO['stopSignal']) {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env,
    stopSignal: stopSignal ?? (() => Promise.resolve('SIGTERM')),
  });
  return { code, stdout, stderr };
}

function kubeconfigFor(dir: string, server: string, token: string): string {
  const path = join(dir, 'kubeconfig');
  writeFileSync(
    path,
    [
      'apiVersion: v1',
      'kind: Config',
      `clusters: [{name: fake, cluster: {server: "${server}"}}]`,
      `users: [{name: poolview, user: {token: ${token}}}]`,
      'contexts: [{name: fake, context: {cluster: fake, user: poolview}}]',
      'current-context: fake',
      '',
    ].join('\n'),
  );
  return path;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** `--flag` → `$ENV` (or undefined) as a text lists them, one flag per line. */
function flagsListedIn(help: string): Map<string, string | undefined> {
  const lines = help.split('\n').map((l) => /^ {2}--([a-z-]+)\s+(?:\[\$([A-Z_]+)\] )?\S/.exec(l));
  return new Map(lines.filter((m) => m !== null).map((m) => [m[1]!, m[2]]));
}

/** The README's flags table: `--flag` → its environment variable and documented default. */
function readmeFlagsTable(): Map<string, { env?: string; default?: string }> {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const table = readme.slice(readme.indexOf('| flag | env | default |')).split('\n\n')[0]!;
  const rows = new Map<string, { env?: string; default?: string }>();
  for (const row of table.split('\n').slice(2)) {
    const [flags, envs, defaults] = row.split('|').slice(1, 4).map((cell) => [...cell.matchAll(/`([^`]*)`/g)].map((m) => m[1]!));
    flags!.forEach((flag, i) => rows.set(flag.replace(/^--/, ''), { env: envs![i], default: defaults![i] }));
  }
  return rows;
}

/** A value each kind of flag accepts, and what it becomes. */
const SAMPLE: Record<FlagSpec['type'], [string, unknown]> = {
  string: ['/some/value', '/some/value'],
  port: ['1234', 1234],
  list: ['a, b', ['a', 'b']],
  duration: ['2s', 2000],
  count: ['7', 7],
  bool: ['true', true],
  gates: ['NodePortAutoListen=true', { NodePortAutoListen: true }],
};

describe('help', () => {
  it.each([['--help'], ['-h'], ['serve', '--help'], ['help']])('%s lists every flag on its own line with its environment variable, exit 0', async (...argv) => {
    const { code, stdout, stderr } = await run(argv);
    expect(code).toBe(0);
    expect(stderr).toBe('');
    const listed = flagsListedIn(stdout);
    expect([...listed.keys()].sort()).toEqual([...FLAGS.map((f) => f.flag), 'help'].sort());
    for (const f of FLAGS) expect(listed.get(f.flag), `--${f.flag}`).toBe(f.env);
  });

  it('every flag --help lists sets its option, from the flag and from its environment variable', async () => {
    const listed = flagsListedIn((await run(['--help'])).stdout);
    for (const f of FLAGS) {
      const [raw, value] = SAMPLE[f.type];
      expect(listed.has(f.flag)).toBe(true);
      expect(parseServeArgs([`--${f.flag}=${raw}`], {})[f.key], `--${f.flag}`).toEqual(value);
      expect(parseServeArgs([], { [listed.get(f.flag)!]: raw })[f.key], `$${f.env}`).toEqual(value);
    }
  });

  it('the README flags table lists every flag with its environment variable and default', () => {
    const table = readmeFlagsTable();
    expect([...table.keys()].sort()).toEqual(FLAGS.map((f) => f.flag).sort());
    for (const f of FLAGS) {
      expect(table.get(f.flag)?.env, `--${f.flag}`).toBe(f.env);
      if (f.key in DEFAULTS) {
        const value = DEFAULTS[f.key as keyof typeof DEFAULTS];
        expect(table.get(f.flag)?.default, `--${f.flag}`).toBe(f.type === 'duration' ? `${Number(value) / 1000}s` : String(value));
      }
    }
    // Every documented default is a flag's.
    for (const key of Object.keys(DEFAULTS)) expect(FLAGS.map((f) => f.key)).toContain(key);
  });
});

describe('mistakes are one line on stderr and exit code 2', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'poolview-cli-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each<[string, string[], Record<string, string>, RegExp]>([
    ['an unknown flag', ['--bogus'], {}, /^poolview: unknown flag --bogus /],
    ['a flag without its value', ['--node-name', 'n', '--port'], {}, /^poolview: --port needs a value /],
    ['a stray argument', ['serve', 'extra'], {}, /^poolview: unexpected argument "extra" /],
    ['an unknown command', ['frobnicate'], {}, /^poolview: unknown command "frobnicate" /],
    ['no node name', [], {}, /^poolview: --node-name \(or NODE_NAME\) is required /],
    ['a bad port', ['--node-name', 'n', '--port', 'http'], {}, /^poolview: --port: "http" is not a port number /],
    ['a bad port from the environment', ['--node-name', 'n'], { POOLVIEW_PORT: '70000' }, /^poolview: \$POOLVIEW_PORT: 70000 is out of range/],
    ['bad feature gates', ['--node-name', 'n', '--feature-gates', 'A=yes'], {}, /^poolview: --feature-gates: "A=yes" is not Name=true\|false /],
    ['unknown feature gate', ['--node-name', 'n', '--feature-gates', 'Nope=true'], {}, /^poolview: --feature-gates: unknown feature gate Nope /],
    ['a bad log level', ['--node-name', 'n', '--log-level', 'loud'], {}, /^poolview: --log-level: "loud" is not one of /],
    ['a bad anonymous policy', ['--node-name', 'n', '--anonymous-requests', 'maybe'], {}, /^poolview: --anonymous-requests: "maybe"/],
    ['proxy-identity on a public address', ['--node-name', 'n', '--anonymous-requests', 'proxy-identity', '--bind-address', '0.0.0.0'], {}, /needs a loopback --bind-address/],
    ['a certificate without its key', ['--node-name', 'n', '--tls-cert-file', '/x.crt'], {}, /go together/],
    ['certificate files and CSRs at once', ['--node-name', 'n', '--tls-cert-file', '/x.crt', '--tls-private-key-file', '/x.key', '--rotate-server-certificates'], {}, /exclude each other/],
    ['a bad boolean', ['--node-name', 'n', '--rotate-server-certificates=maybe'], {}, /^poolview: --rotate-server-certificates: "maybe" is not true or false /],
    ['a bad duration', ['--node-name', 'n', '--scope-change-wait', '2'], {}, /^poolview: --scope-change-wait: "2" is not a duration /],
    ['a secure port without a certificate', ['--node-name', 'n', '--secure-port', '10268'], {}, /--secure-port needs a serving certificate/],
    ['a missing kubeconfig', ['--node-name', 'n', '--kubeconfig', '/nonexistent/kubeconfig'], {}, /^poolview: cannot read kubeconfig \/nonexistent\/kubeconfig: no such file\n$/],
    ['a missing kubeconfig from KUBECONFIG', [], { NODE_NAME: 'n', KUBECONFIG: '/nonexistent/kc' }, /^poolview: cannot read kubeconfig \/nonexistent\/kc/],
    ['neither kubeconfig nor cluster', ['--node-name', 'n'], {}, /^poolview: no --kubeconfig .* not running in a cluster/],
    ['an unknown filter to disable', ['--node-name', 'n', '--disabled-filters', 'masterservice,nope'], {}, /^poolview: --disabled-filters: unknown filter "nope" /],
    ['a bad working mode', ['--node-name', 'n'], { POOLVIEW_WORKING_MODE: 'local' }, /^poolview: --working-mode: "local" is not edge or cloud/],
    ['a dummy address that is not an IP', ['--node-name', 'n', '--enable-dummy-if', '--dummy-if-ip', 'hub-dummy0'], {}, /^poolview: --dummy-if-ip: "hub-dummy0" is not an IP address/],
  ])('%s', async (_what, argv, env, message) => {
    const { code, stdout, stderr } = await run(argv, env);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(message);
    expect(stderr.endsWith('\n')).toBe(true);
    expect(stderr.trimEnd().split('\n')).toHaveLength(1);
  });

  it('an unreadable serving certificate', async () => {
    const kc = kubeconfigFor(dir, 'http://127.0.0.1:1', 't');
    const { code, stderr } = await run(['--node-name', 'n', '--kubeconfig', kc, '--tls-cert-file', join(dir, 'no.crt'), '--tls-private-key-file', join(dir, 'no.key')]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/^poolview: cannot read --tls-cert-file .*no\.crt: ENOENT/);
  });
});

describe('flags and environment', () => {
  it('reads every option from a flag or its environment twin; the flag wins', () => {
    const env = {
      KUBECONFIG: '/env/kc',
      NODE_NAME: 'env-node',
      NODEPOOL_NAME: 'env-pool',
      POOLVIEW_BIND_ADDRESS: '::1',
      POOLVIEW_PORT: '1000',
      POOLVIEW_HEALTH_PORT: '1001',
      POOLVIEW_LOG_LEVEL: 'debug',
      POOLVIEW_FEATURE_GATES: 'NodePortAutoListen=true, ViewTransitions=false',
      POOLVIEW_CONFIGMAP_NAME: '',
    };
    expect(parseServeArgs(['--node-name', 'flag-node', '--port=2000', '--configmap-namespace', 'cfg'], { ...env, POOLVIEW_CERT_DIR: '/env/pki', POOLVIEW_ROTATE_SERVER_CERTIFICATES: 'true' })).toEqual({
      rotateServerCertificates: true,
      certDir: '/env/pki',
      kubeconfig: '/env/kc',
      nodeName: 'flag-node',
      nodePoolName: 'env-pool',
      bindAddress: '::1',
      port: 2000,
      healthPort: 1001,
      logLevel: 'debug',
      featureGates: { NodePortAutoListen: true, ViewTransitions: false },
      configMapNamespace: 'cfg',
    });
  });
});

describe('in-cluster client filters: --disabled-filters, --working-mode, poolview\'s address', () => {
  it('lists from a flag or its environment twin, trimmed', () => {
    expect(parseServeArgs(['--disabled-filters', ' masterservice, ,inclusterconfig '], {}).disabledFilters).toEqual(['masterservice', 'inclusterconfig']);
    expect(parseServeArgs([], { POOLVIEW_DISABLED_FILTERS: '*', POOLVIEW_WORKING_MODE: 'cloud', POOLVIEW_ENABLE_DUMMY_IF: 'true', POOLVIEW_DUMMY_IF_IP: '169.254.9.9' })).toEqual({
      disabledFilters: ['*'],
      workingMode: 'cloud',
      enableDummyIf: true,
      dummyIfIp: '169.254.9.9',
    });
  });

  it('the address: the dummy one when enabled (IPv6 default with an IPv6 bind), else a specific bind address, else none', () => {
    const opts = (o: Partial<PoolviewOptions>) => resolveOptions({ nodeName: 'n', ...o });
    expect(proxyHost(opts({}))).toBe('127.0.0.1');
    expect(proxyHost(opts({ bindAddress: '10.0.0.7' }))).toBe('10.0.0.7');
    expect(proxyHost(opts({ bindAddress: '0.0.0.0' }))).toBeUndefined();
    expect(proxyHost(opts({ enableDummyIf: true }))).toBe('169.254.2.1');
    expect(proxyHost(opts({ enableDummyIf: true, bindAddress: '::1' }))).toBe('fd00::2:1');
    expect(proxyHost(opts({ enableDummyIf: true, bindAddress: '0.0.0.0', dummyIfIp: '169.254.3.3' }))).toBe('169.254.3.3');
    expect(opts({}).workingMode).toBe('edge');
    expect(opts({}).disabledFilters).toEqual([]);
  });
});

it('--scope-change-wait takes a Go duration, in milliseconds (default 1 s)', () => {
  expect(parseServeArgs(['--scope-change-wait', '2s'], {}).scopeChangeWaitMs).toBe(2000);
  expect(parseServeArgs(['--scope-change-wait=1.5s'], {}).scopeChangeWaitMs).toBe(1500);
  expect(parseServeArgs([], { POOLVIEW_SCOPE_CHANGE_WAIT: '250ms' }).scopeChangeWaitMs).toBe(250);
  expect(parseServeArgs(['--scope-change-wait', '0'], {}).scopeChangeWaitMs).toBe(0);
  expect(resolveOptions({ nodeName: 'n' }).scopeChangeWaitMs).toBe(1000);
});

it('watch cache flags: a history length and a duration as Kubernetes components write them', () => {
  expect(parseServeArgs(['--watch-cache-history=500', '--authorization-cache-ttl', '1m30s'], {})).toMatchObject({ watchCacheHistory: 500, authorizationCacheTtlMs: 90_000 });
  expect(parseServeArgs([], { POOLVIEW_AUTHORIZATION_CACHE_TTL: '500ms', POOLVIEW_WATCH_CACHE_HISTORY: '7' })).toMatchObject({ watchCacheHistory: 7, authorizationCacheTtlMs: 500 });
  expect(() => parseServeArgs(['--watch-cache-history=0'], {})).toThrow(/--watch-cache-history: "0" is not a positive whole number/);
  expect(() => parseServeArgs(['--authorization-cache-ttl=10'], {})).toThrow(/not a duration/);
  expect(helpText()).toContain('--authorization-cache-ttl');
});

it('a boolean flag alone means true, as in Kubernetes components', () => {
  expect(parseServeArgs(['--rotate-server-certificates'], {}).rotateServerCertificates).toBe(true);
  expect(parseServeArgs(['--rotate-server-certificates=false'], { POOLVIEW_ROTATE_SERVER_CERTIFICATES: 'true' }).rotateServerCertificates).toBe(false);
});

it('takes the first existing file of a $KUBECONFIG list', () => {
  const dir = mkdtempSync(join(tmpdir(), 'poolview-kclist-'));
  try {
    const second = join(dir, 'second');
    writeFileSync(second, '');
    expect(parseServeArgs([], { KUBECONFIG: `${join(dir, 'missing')}:${second}` }).kubeconfig).toBe(second);
    expect(parseServeArgs([], { KUBECONFIG: `/a:/b` }).kubeconfig).toBe('/a');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('serve', () => {
  let fake: FakeApiserver;
  let dir: string;
  beforeAll(async () => {
    fake = await startFakeApiserver({ tokens: { 'own-token': 'poolview' } });
    dir = mkdtempSync(join(tmpdir(), 'poolview-serve-'));
  });
  afterAll(async () => {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs until asked to stop, then exits 0', async () => {
    let stop!: (signal: string) => void;
    const stopped = new Promise<string>((r) => (stop = r));
    const port = await freePort();
    const exit = run(
      ['serve', '--node-name', 'n1', '--kubeconfig', kubeconfigFor(dir, fake.url, 'own-token'), '--port', String(port), '--health-port', '0', '--log-level', 'silent'],
      {},
      () => stopped,
    );
    await waitFor(async () => (await request(`http://127.0.0.1:${port}/version`).then((r) => r.body.text().then(() => r.statusCode), () => 0)) === 401, 10_000, 'serving');
    stop('SIGTERM');
    expect(await exit).toEqual({ code: 0, stdout: '', stderr: '' });
  });

  describe('as a real process', () => {
    beforeAll(() => {
      // bin/poolview.js runs the compiled CLI; other files may still have type errors, emit anyway.
      spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.json')], { cwd: root, stdio: 'ignore' });
      expect(existsSync(join(root, 'dist/src/cli.js'))).toBe(true);
    }, 120_000);

    it('exits 2 with one line for a bad flag', () => {
      const res = spawnSync(process.execPath, [join(root, 'bin/poolview.js'), '--nope'], { encoding: 'utf8' });
      expect(res.status).toBe(2);
      expect(res.stdout).toBe('');
      expect(res.stderr).toMatch(/^poolview: unknown flag --nope \(see poolview --help\)\n$/);
    });

    it('on SIGTERM ends open watches cleanly and exits 0 within a few seconds', async () => {
      const [port, healthPort] = [await freePort(), await freePort()];
      const child = spawn(process.execPath, [join(root, 'bin/poolview.js'), '--port', String(port), '--health-port', String(healthPort)], {
        env: { ...process.env, NODE_NAME: 'n1', KUBECONFIG: kubeconfigFor(dir, fake.url, 'own-token'), POOLVIEW_LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d));
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      try {
        await waitFor(async () => (await request(`http://127.0.0.1:${healthPort}/readyz`).then((r) => r.body.text().then(() => r.statusCode), () => 0)) === 200, 20_000, 'ready');
        const watch = await request(`http://127.0.0.1:${port}/api/v1/namespaces/default/configmaps?watch=true`, { headers: { authorization: 'Bearer own-token' } });
        expect(watch.statusCode).toBe(200);
        const ended = watch.body.text().then(() => 'end', (err: Error) => err.message);
        const started = Date.now();
        child.kill('SIGTERM');
        expect(await ended).toBe('end');
        expect(await exited).toBe(0);
        expect(Date.now() - started).toBeLessThan(5_000);
        expect(stderr).not.toMatch(/own-token/);
      } finally {
        child.kill('SIGKILL');
      }
    }, 60_000);
  });
});
