// The kubectl plugin: the real kubectl finds the executable kubectl-poolview on PATH (as npm links a
// package's "bin") and `kubectl poolview view --node N` runs `poolview view` against the real
// cluster, with kubectl's conventions: --kubeconfig, --context, $KUBECONFIG.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ViewReport } from '../../src/commands/view.js';
import { PLUGIN_HELP } from '../../src/kubectl-plugin.js';
import { run, type RunResult } from '../support/processes.js';
import { sharedCluster, uniqueName } from '../support/shared-cluster.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const LISTEN = 'nodeport.openyurt.io/listen';

const cluster = sharedCluster();
const scratch = mkdtempSync(join(tmpdir(), 'poolview-plugin-'));
const pluginDir = join(scratch, 'bin');
const cleanups: (() => Promise<unknown>)[] = [];

const ns = uniqueName('plugin');
const pool = uniqueName('plugin-pool');
const node = uniqueName('plugin-node');

/** The real kubectl with the plugin directory first on PATH and no kubeconfig unless given. */
function kubectl(args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  const base: NodeJS.ProcessEnv = { ...process.env, PATH: `${pluginDir}${delimiter}${process.env.PATH}`, HOME: scratch };
  delete base.KUBECONFIG;
  return run(join(cluster.binDir, 'kubectl'), args, { env: { ...base, ...env }, timeoutMs: 90_000 });
}

beforeAll(async () => {
  // The plugin runs the compiled code (bin/kubectl-poolview.js imports dist/); emit even if some
  // other file has type errors.
  spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.json')], { cwd: ROOT, stdio: 'ignore' });
  expect(existsSync(join(ROOT, 'dist/src/kubectl-plugin.js'))).toBe(true);
  // What `npm install -g poolview` does with package.json "bin": a link named after the command.
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  mkdirSync(pluginDir, { recursive: true });
  symlinkSync(join(ROOT, pkg.bin['kubectl-poolview']), join(pluginDir, 'kubectl-poolview'));

  await cluster.createNamespace(ns);
  cleanups.push(() => cluster.delete('v1', 'Namespace', ns));
  await cluster.createNodePool(pool, { nodes: [node] });
  cleanups.push(() => cluster.delete('apps.openyurt.io/v1beta2', 'NodePool', pool));
  await cluster.createNode(node, { internalIP: '10.250.253.1', pool });
  cleanups.push(() => cluster.delete('v1', 'Node', node));
  const ports = [{ name: 'http', port: 80, targetPort: 8080 }];
  await cluster.createService(ns, 'np-here', { type: 'NodePort', ports, annotations: { [LISTEN]: pool } });
  await cluster.createService(ns, 'np-elsewhere', { type: 'NodePort', ports, annotations: { [LISTEN]: 'some-other-pool' } });
}, 180_000);

afterAll(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => {});
  rmSync(scratch, { recursive: true, force: true });
  await cluster.close();
});

function visibility(stdout: string): Record<string, boolean> {
  const report = JSON.parse(stdout) as ViewReport;
  expect(report).toMatchObject({ node, pool });
  return Object.fromEntries(report.services.filter((s) => s.namespace === ns).map((s) => [s.name, s.visible]));
}

describe('kubectl poolview', () => {
  it('kubectl plugin list finds kubectl-poolview on PATH', async () => {
    const r = await kubectl(['plugin', 'list']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(join(pluginDir, 'kubectl-poolview'));
    // No "is not executable" / "overshadowed" warnings about it.
    expect(r.stderr).not.toContain('kubectl-poolview');
  });

  it('kubectl poolview view --node N --kubeconfig K shows that node\'s view of the real cluster', async () => {
    const r = await kubectl(['poolview', 'view', '--node', node, '--kubeconfig', cluster.kubeconfig('poolview'), '-o', 'json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(visibility(r.stdout)).toEqual({ 'np-here': true, 'np-elsewhere': false });
    // The table for people: the hidden Service, and why (this node's pool is not listened on).
    const table = await kubectl(['poolview', 'view', '--node', node, '--kubeconfig', cluster.kubeconfig('poolview')]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(new RegExp(`^${ns}\\s+np-elsewhere\\s+NodePort\\s+no\\s+.*${pool}`, 'm'));
  });

  it('honours $KUBECONFIG and --context as kubectl does, --component too', async () => {
    // A kubeconfig whose current context points at nothing; the context "e2e" at the real cluster.
    const real = JSON.parse(readFileSync(cluster.kubeconfig('poolview'), 'utf8'));
    const file = join(scratch, 'two-contexts.kubeconfig');
    writeFileSync(
      file,
      JSON.stringify({
        ...real,
        clusters: [...real.clusters, { name: 'nowhere', cluster: { server: 'https://127.0.0.1:1', 'insecure-skip-tls-verify': true } }],
        contexts: [...real.contexts, { name: 'nowhere', context: { cluster: 'nowhere', user: real.users[0].name } }],
        'current-context': 'nowhere',
      }),
      { mode: 0o600 },
    );
    const env = { KUBECONFIG: file };
    const viaContext = await kubectl(['poolview', 'view', '--node', node, '--context', 'e2e', '--component', 'coredns', '-o', 'json'], env);
    expect(viaContext.stderr).toBe('');
    expect(viaContext.code).toBe(0);
    expect((JSON.parse(viaContext.stdout) as ViewReport).component).toBe('coredns');
    // nodeportisolation does not target coredns: it sees both NodePort Services.
    expect(visibility(viaContext.stdout)).toEqual({ 'np-here': true, 'np-elsewhere': true });
    // The current context is used when --context is not given: here, nothing answers.
    const current = await kubectl(['poolview', 'view', '--node', node, '-o', 'json'], env);
    expect(current.code).toBe(1);
    expect(current.stderr).toMatch(/127\.0\.0\.1:1|ECONNREFUSED/);
    // A context the file does not define is an invocation error, as in kubectl.
    const missing = await kubectl(['poolview', 'view', '--node', node, '--context', 'nope'], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('context "nope" does not exist');
  });

  it('prints its usage, and refuses what it does not offer', async () => {
    const help = await kubectl(['poolview']);
    expect(help.code).toBe(0);
    expect(help.stdout).toBe(PLUGIN_HELP);
    const serve = await kubectl(['poolview', 'serve']);
    expect(serve.code).toBe(2);
    expect(serve.stderr).toContain('kubectl poolview: unknown command "serve"');
    const viewHelp = await kubectl(['poolview', 'view', '--help']);
    expect(viewHelp.code).toBe(0);
    expect(viewHelp.stdout).toContain('--context NAME');
  });
});
