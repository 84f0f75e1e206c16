// The health port: /healthz and /livez (the process serves), /readyz (the apiserver is reachable and
// the views are ready; `?verbose` lists the checks as the apiserver does) and /metrics.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Upstream } from './types.js';
import type { ReadinessCheck } from './views/index.js';
import { registerReadinessMetrics, type ProxyMetrics } from './metrics.js';

export type { ReadinessCheck };

const PROBE_TIMEOUT_MS = 5_000;

export interface UpstreamProbe {
  check(): ReadinessCheck;
  /** Probes once now; resolves when done. */
  probe(): Promise<void>;
  stop(): void;
}

/**
 * Periodically asks the apiserver for /readyz with poolview's own credentials (falls back to /version
 * for a server without /readyz) and keeps the answer as a readiness check and the upstream-up gauge.
 */
export function startUpstreamProbe(upstream: Upstream, opts: { intervalMs: number; metrics: ProxyMetrics; log: Logger }): UpstreamProbe {
  let state: ReadinessCheck = { name: 'apiserver', ok: false, detail: 'not probed yet' };
  let path = '/readyz';
  let inFlight: Promise<void> | undefined;

  const ask = async (probePath: string): Promise<number> => {
    const { statusCode, body } = await upstream.ownDispatcher.request({
      origin: upstream.url.origin,
      path: (upstream.url.pathname === '/' ? '' : upstream.url.pathname) + probePath,
      method: 'GET',
      headers: { ...upstream.ownHeaders(), 'user-agent': 'poolview' },
      signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
    });
    await body.dump();
    return statusCode;
  };

  const probeOnce = async (): Promise<void> => {
    let next: ReadinessCheck;
    try {
      let code = await ask(path);
      if (code === 404 && path === '/readyz') {
        path = '/version';
        code = await ask(path);
      }
      next = code >= 200 && code < 300 ? { name: 'apiserver', ok: true } : { name: 'apiserver', ok: false, detail: `GET ${path} answered ${code}` };
    } catch (err) {
      next = { name: 'apiserver', ok: false, detail: (err as Error).message || String(err) };
    }
    if (next.ok !== state.ok) {
      if (next.ok) opts.log.info('apiserver is reachable');
      else opts.log.warn({ reason: next.detail }, 'apiserver is not reachable');
    }
    state = next;
    opts.metrics.upstreamUp.set(next.ok ? 1 : 0);
  };

  const probe = (): Promise<void> => (inFlight ??= probeOnce().finally(() => (inFlight = undefined)));
  const timer = setInterval(() => void probe(), opts.intervalMs);
  timer.unref();
  return { check: () => state, probe, stop: () => clearInterval(timer) };
}

/** The /readyz answer: 200 "ok", or 500 with one line a check; verbose always lists. */
export function readyzResponse(checks: ReadinessCheck[], verbose: boolean): { code: number; text: string } {
  const ok = checks.every((c) => c.ok);
  if (ok && !verbose) return { code: 200, text: 'ok' };
  const lines = checks.map((c) => (c.ok ? `[+]${c.name} ok` : `[-]${c.name} failed: ${c.detail ?? 'not ready'}`));
  lines.push(ok ? 'readyz check passed' : 'readyz check failed');
  return { code: ok ? 200 : 500, text: lines.join('\n') + '\n' };
}

/** The health port's server: /healthz, /livez, /readyz[/<check>][?verbose], /metrics. */
export function createHealthServer(opts: { registry: Registry; checks: () => ReadinessCheck[] }): Server {
  registerReadinessMetrics(opts.registry, opts.checks);
  const plain = { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff', 'cache-control': 'no-cache, private' };
  const send = (res: ServerResponse, code: number, text: string, headers: Record<string, string> = plain) => {
    res.writeHead(code, { ...headers, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  const answer = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://health');
    const path = url.pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed\n', { ...plain, allow: 'GET, HEAD' });
    if (path === '/healthz' || path === '/livez') return send(res, 200, 'ok');
    if (path === '/readyz') {
      const { code, text } = readyzResponse(opts.checks(), url.searchParams.has('verbose'));
      return send(res, code, text);
    }
    if (path.startsWith('/readyz/')) {
      let name: string;
      try {
        name = decodeURIComponent(path.slice('/readyz/'.length));
      } catch {
        return send(res, 404, 'not found\n'); // not a check's name (e.g. /readyz/%zz)
      }
      const check = opts.checks().find((c) => c.name === name);
      if (!check) return send(res, 404, `no readyz check named ${name}\n`);
      return send(res, check.ok ? 200 : 500, check.ok ? 'ok' : `[-]${check.name} failed: ${check.detail ?? 'not ready'}\n`);
    }
    if (path === '/metrics') return send(res, 200, await opts.registry.metrics(), { 'content-type': opts.registry.contentType });
    return send(res, 404, 'not found\n');
  };
  return createServer((req, res) => {
    answer(req, res).catch(() => {
      if (!res.headersSent) send(res, 500, 'internal error\n');
      else res.destroy();
    });
  });
}
