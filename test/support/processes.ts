// Child processes and clean-up for the e2e harness: every process and temporary resource the
// harness creates is registered here, so it is removed on an orderly stop, on process exit and on
// SIGINT/SIGTERM/SIGHUP, even when tests fail half-way.
import { spawn, execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';

type SyncCleanup = () => void;
const cleanups = new Set<SyncCleanup>();
let hooked = false;

function runAllCleanups(): void {
  for (const fn of [...cleanups].reverse()) {
    cleanups.delete(fn);
    try {
      fn();
    } catch {
      // best effort: the process is going away
    }
  }
}

function hookProcessExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', runAllCleanups);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      runAllCleanups();
      // When nobody else handles the signal, die of it as Node would have without this hook.
      if (process.listenerCount(signal) === 1) {
        process.removeListener(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }
}

/** Registers a synchronous clean-up to run at exit; returns a function that unregisters it. */
export function onExit(fn: SyncCleanup): () => void {
  hookProcessExit();
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

/** Removes a directory now and at exit (if still there). */
export function tempDirCleanup(dir: string): () => void {
  const remove = (): void => {
    if (process.env.POOLVIEW_E2E_KEEP) return;
    rmSync(dir, { recursive: true, force: true });
  };
  const unregister = onExit(remove);
  return () => {
    unregister();
    remove();
  };
}

/** A TCP port that was free a moment ago on `host`. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

let pdeathsig: boolean | undefined;
/** `setpriv --pdeathsig KILL` makes a child die with us even when we are SIGKILLed. */
function pdeathsigPrefix(): string[] {
  if (pdeathsig === undefined) {
    try {
      execFileSync('setpriv', ['--pdeathsig', 'KILL', '--', 'true'], { stdio: 'ignore' });
      pdeathsig = true;
    } catch {
      pdeathsig = false;
    }
  }
  return pdeathsig ? ['setpriv', '--pdeathsig', 'KILL', '--'] : [];
}

export interface ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly logFile: string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  /** True while the process runs. */
  running(): boolean;
  /** The last `lines` lines of its log. */
  logTail(lines?: number): string;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts `argv` with stdout+stderr appended to `logFile`. `prefix` goes before the command, after
 * the parent-death wrapper (e.g. ['ip', 'netns', 'exec', ns]).
 */
export function startProcess(
  name: string,
  argv: string[],
  opts: { logFile: string; prefix?: string[]; env?: NodeJS.ProcessEnv; cwd?: string },
): ManagedProcess {
  const full = [...(opts.prefix ?? []), ...pdeathsigPrefix(), ...argv];
  const log = createWriteStream(opts.logFile, { flags: 'a' });
  const child = spawn(full[0]!, full.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: opts.env ?? process.env,
    cwd: opts.cwd,
  });
  child.stdout!.pipe(log, { end: false });
  child.stderr!.pipe(log, { end: false });
  let done = false;
  const exited = new Promise<number | string>((resolve) => {
    child.on('error', (err) => {
      log.write(`\n[harness] failed to start ${name}: ${err.message}\n`);
      done = true;
      resolve('spawn-error');
    });
    child.on('exit', (code, signal) => {
      done = true;
      resolve(code ?? signal ?? 'unknown');
    });
  });
  exited.then(() => setTimeout(() => log.end(), 50));
  const unregister = onExit(() => {
    if (!done) child.kill('SIGKILL');
  });
  const proc: ManagedProcess = {
    name,
    child,
    logFile: opts.logFile,
    exited,
    running: () => !done,
    logTail(lines = 40) {
      if (!existsSync(opts.logFile)) return '';
      return readFileSync(opts.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    },
    async stop(graceMs = 5000) {
      unregister();
      if (done) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  return proc;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Runs a command to completion; never rejects for a non-zero exit (see `code`). */
export function run(
  file: string,
  args: string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        if (err && typeof (err as NodeJS.ErrnoException).code === 'string') {
          reject(err); // could not start (ENOENT, ...)
          return;
        }
        const code = err ? ((err as { code?: number }).code ?? 1) : 0;
        resolve({ stdout: String(stdout), stderr: String(stderr), code });
      },
    );
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    else child.stdin!.end();
  });
}

/** Like `run` but throws with stderr when the command fails. */
export async function runOk(file: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  const r = await run(file, args, opts);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

/** True when process `pid` exists. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Thrown from a poll check to give up at once (e.g. the process being waited for has exited). */
export class PollAbort extends Error {}

/** Polls `check` until it returns a value other than undefined/false, or throws after `timeoutMs`. */
export async function poll<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 30_000,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value as T;
    } catch (err) {
      if (err instanceof PollAbort) throw err;
      lastError = err;
    }
    if (Date.now() > deadline) {
      const detail = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
    }
    await sleep(intervalMs);
  }
}
