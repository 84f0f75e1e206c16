// poolview's command line: `poolview [serve] [flags]`, other subcommands from src/commands/<name>.ts.
// Mistakes in the invocation are one line on stderr and exit code 2; signals shut down gracefully.
import { existsSync } from 'node:fs';
import { delimiter } from 'node:path';
import { parseArgs } from 'node:util';
import { describeParseError, FLAGS, parseBool, parseCount, parseDuration, parseFeatureGates, parsePort, UsageError, type PoolviewOptions } from './options.js';
import { UpstreamConfigError } from './upstream.js';

export interface CliIO {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  env: Record<string, string | undefined>;
  /** Resolves when the process is asked to stop; default: the first SIGTERM or SIGINT. */
  stopSignal: () => Promise<string>;
}

/** A subcommand module (src/commands/<name>.ts) exports `run`. */
export interface Command {
  run(argv: string[], io: CliIO): Promise<number>;
}

const SHUTDOWN_DEADLINE_MS = 10_000;

export function helpText(): string {
  const width = Math.max(...FLAGS.map((f) => f.flag.length)) + 2;
  const lines = [
    'poolview - edge-side filtering proxy for the Kubernetes API (drop-in for yurt-hub\'s filtering proxy)',
    '',
    'Usage: poolview [serve] [flags]',
    '       poolview <command> [flags]     other commands: demo, view (each with --help)',
    '',
    'Flags (each also read from the environment variable shown; a flag wins over its variable):',
    ...FLAGS.map((f) => `  --${f.flag.padEnd(width)}${f.env ? `[$${f.env}] ` : ''}${f.help}`),
    `  --${'help'.padEnd(width)}print this help`,
    '',
    'Ports: the proxy serves plain HTTP on --port and HTTPS on --secure-port; /healthz /livez /readyz /metrics on --health-port.',
    'The HTTPS certificate comes from --tls-cert-file/--tls-private-key-file (reloaded when the files change) or, with',
    '--rotate-server-certificates=true, from a CertificateSigningRequest that an approver approves (kubectl certificate approve).',
  ];
  return lines.join('\n') + '\n';
}

/** Parses serve flags (with their environment twins) into options for startPoolview(). */
export function parseServeArgs(argv: string[], env: Record<string, string | undefined>): Partial<PoolviewOptions> & { nodeName: string } {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  for (const f of FLAGS) options[f.flag] = { type: 'string' };
  // A boolean flag alone means true (--rotate-server-certificates), as in Kubernetes components.
  const bools = new Set(FLAGS.filter((f) => f.type === 'bool').map((f) => `--${f.flag}`));
  const args = argv.map((a) => (bools.has(a) ? `${a}=true` : a));
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args, options, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new UsageError(describeParseError(err));
  }
  if (values.help) throw new HelpRequested();

  const result: Record<string, unknown> = {};
  for (const f of FLAGS) {
    const fromFlag = values[f.flag] as string | undefined;
    const raw = fromFlag ?? (f.env && env[f.env] !== '' ? env[f.env] : undefined);
    if (raw === undefined) continue;
    const what = fromFlag !== undefined ? `--${f.flag}` : `$${f.env}`;
    if (f.key === 'kubeconfig' && fromFlag === undefined) result[f.key] = firstKubeconfig(raw);
    else if (f.type === 'port') result[f.key] = parsePort(raw, what);
    else if (f.type === 'gates') result[f.key] = parseFeatureGates(raw, what);
    else if (f.type === 'bool') result[f.key] = parseBool(raw, what);
    else if (f.type === 'list') result[f.key] = raw.split(',').map((v) => v.trim()).filter((v) => v !== '');
    else if (f.type === 'count') result[f.key] = parseCount(raw, what);
    else if (f.type === 'duration') result[f.key] = parseDuration(raw, what);
    else result[f.key] = raw;
  }
  return result as Partial<PoolviewOptions> & { nodeName: string };
}

class HelpRequested extends Error {}

/** $KUBECONFIG may list several files, as for kubectl; poolview reads one: the first that exists. */
function firstKubeconfig(list: string): string {
  const paths = list.split(delimiter).filter((p) => p !== '');
  return paths.find((p) => existsSync(p)) ?? paths[0] ?? list;
}


function defaultStopSignal(): Promise<string> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      // A second signal while shutting down means "now".
      process.once('SIGTERM', () => process.exit(1));
      process.once('SIGINT', () => process.exit(1));
      resolve(signal);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

async function serve(argv: string[], io: CliIO): Promise<number> {
  const opts = parseServeArgs(argv, io.env);
  // Loaded only to serve: --help and flag mistakes stay fast.
  const { startPoolview } = await import('./app.js');
  const running = await startPoolview(opts);
  const signal = await io.stopSignal();
  const deadline = setTimeout(() => {
    io.stderr.write(`poolview: shutdown took longer than ${SHUTDOWN_DEADLINE_MS / 1000}s after ${signal}; exiting\n`);
    process.exit(1);
  }, SHUTDOWN_DEADLINE_MS);
  deadline.unref();
  await running.close();
  clearTimeout(deadline);
  return 0;
}

async function loadCommand(name: string): Promise<Command | undefined> {
  // A plain word only: the name becomes a module path.
  if (!/^[a-z][a-z0-9-]*$/.test(name)) return undefined;
  // .ts when run from source (tests), .js when compiled.
  const found = ['.js', '.ts'].map((ext) => new URL(`./commands/${name}${ext}`, import.meta.url)).find((url) => existsSync(url));
  if (!found) return undefined;
  return (await import(found.href)) as Command;
}

/** Runs the CLI; resolves with the process exit code. */
export async function main(argv: string[], partialIO: Partial<CliIO> = {}): Promise<number> {
  const io: CliIO = {
    stdout: partialIO.stdout ?? process.stdout,
    stderr: partialIO.stderr ?? process.stderr,
    env: partialIO.env ?? process.env,
    stopSignal: partialIO.stopSignal ?? defaultStopSignal,
  };
  const [first, ...rest] = argv;
  try {
    if (first === undefined || first.startsWith('-')) return await serve(argv, io);
    if (first === 'serve') return await serve(rest, io);
    if (first === 'help') throw new HelpRequested();
    const command = await loadCommand(first);
    if (!command) throw new UsageError(`unknown command "${first}"`);
    return await command.run(rest, io);
  } catch (err) {
    if (err instanceof HelpRequested) {
      io.stdout.write(helpText());
      return 0;
    }
    if (err instanceof UsageError) {
      io.stderr.write(`poolview: ${err.message} (see poolview --help)\n`);
      return 2;
    }
    if (err instanceof UpstreamConfigError) {
      io.stderr.write(`poolview: ${err.message}\n`);
      return 2;
    }
    const e = err as Error;
    io.stderr.write(`poolview: ${(e?.message ?? String(err)).split('\n')[0]}\n`);
    return 1;
  }
}
