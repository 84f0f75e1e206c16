// The proxy front: an HTTP(S) server that classifies each request, offers it to the view engine,
// and otherwise streams it to the apiserver and back unchanged.
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import type { Duplex } from 'node:stream';
import type { InterceptContext, Interceptor, RequestInfo, Upstream } from './types.js';
import type { AnonymousRequests } from './options.js';
import { componentOf, resolveRequestInfo } from './request-info.js';
import { statusBody } from './status.js';
import { componentLabel, resourceLabel, verbLabel, type ProxyMetrics } from './metrics.js';

/** Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1), plus Expect (Node answers 100-continue itself). */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
]);

/** Header names a Connection header declares hop-by-hop for this message. */
export function connectionTokens(connection: string | string[] | undefined): Set<string> {
  const tokens = new Set<string>();
  if (connection === undefined) return tokens;
  for (const value of Array.isArray(connection) ? connection : [connection]) {
    for (const token of value.split(',')) {
      const name = token.trim().toLowerCase();
      if (name) tokens.add(name);
    }
  }
  return tokens;
}

export type ForwardVia = InterceptContext['forwardVia'];

/** Idle keep-alive connections are closed after this long. */
const KEEP_ALIVE_TIMEOUT_MS = 72_000;

/**
 * The headers to send upstream for a client's request, as a raw name/value list: the client's own
 * (its Authorization included), in its order and spelling, repeated ones kept apart (Impersonate-Group
 * may repeat), minus hop-by-hop headers, Host, and any header deleted from req.headers; then
 * forwardVia.headers, which replace the client's of the same name.
 */
export function forwardHeaders(req: IncomingMessage, forwardVia: ForwardVia): string[] {
  const out: string[] = [];
  const perConnection = req.headers.connection === undefined ? undefined : connectionTokens(req.headers.connection);
  const extra = forwardVia.headers;
  const replaced = new Set(Object.keys(extra).map((name) => name.toLowerCase()));
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (name === 'host' || HOP_BY_HOP.has(name) || perConnection?.has(name) || replaced.has(name) || req.headers[name] === undefined) continue;
    out.push(raw[i], raw[i + 1]);
  }
  for (const name of Object.keys(extra)) out.push(name, extra[name]);
  return out;
}

/** The upstream's response headers a client may see: all but hop-by-hop ones. */
export function responseHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const perConnection = connectionTokens(headers.connection);
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || perConnection.has(name)) continue;
    out[name] = value;
  }
  return out;
}


export function writeStatus(res: ServerResponse, code: number, reason: string, message: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = statusBody(code, reason, message);
  res.writeHead(code, {
    ...headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-cache, private',
  });
  res.end(body);
}

/**
 * Rewrites an absolute-form request target (`GET http://host/api/v1/...`, RFC 9112 §3.2.2) to the
 * origin form, so it is classified and filtered like any other; false for a target that is neither.
 */
export function toOriginForm(req: IncomingMessage): boolean {
  const url = req.url ?? '';
  if (url.startsWith('/')) return true;
  if (!/^https?:\/\//i.test(url)) return false;
  try {
    const parsed = new URL(url);
    req.url = parsed.pathname + parsed.search;
    return true;
  } catch {
    return false;
  }
}

/** The upstream path for a client's request URL (keeps a path prefix of the kubeconfig server, if any). */
export function upstreamPath(upstream: Upstream, url: string): string {
  const base = upstream.url.pathname;
  return base === '/' || base === '' ? url : base + url;
}

/** Failures to connect: the request never reached the apiserver. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

/** Above kube-apiserver's --request-timeout (60 s), so its own timeout answer still gets through. */
const PASS_THROUGH_HEADERS_TIMEOUT_MS = 90_000;
/** Subresources the apiserver serves as long-running requests. */
const LONG_RUNNING_SUBRESOURCES = new Set(['log', 'proxy', 'exec', 'attach', 'portforward']);

function isLongRunning(info: RequestInfo): boolean {
  return info.verb === 'watch' || info.verb === 'proxy' || LONG_RUNNING_SUBRESOURCES.has(info.subresource);
}

export interface ForwardOptions {
  /** Called with the byte count of each body chunk sent to the client. */
  onDownstreamBytes?(bytes: number): void;
  /** Receives a function that ends this stream cleanly (graceful shutdown). */
  onStop?(stop: () => void): void;
}

/**
 * Streams one request to the apiserver and the response back, unchanged and with backpressure both
 * ways, no timeouts. The client going away aborts the upstream request. When the upstream ends or
 * breaks a watch, the client's stream ends cleanly so its reflector simply re-watches.
 * Uses undici's dispatch handler directly: no intermediate body stream or promise per chunk.
 */
export function forwardRequest(ctx: InterceptContext, options: ForwardOptions = {}): Promise<void> {
  const { req, res, upstream, forwardVia, info } = ctx;
  const isWatch = info.verb === 'watch';
  const countBytes = options.onDownstreamBytes;
  const length = req.headers['content-length'];
  const hasBody = (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;

  return new Promise<void>((resolve) => {
    let controller: Dispatcher.DispatchController | undefined;
    let cancel: Error | undefined; // why we stop, once we do
    let stopping = false;
    let responding = false;
    let settled = false;

    const abort = (reason: Error) => {
      cancel ??= reason;
      controller?.abort(reason);
    };
    const onClose = () => {
      if (!res.writableFinished) abort(new Error('client went away'));
    };
    const onDrain = () => controller?.resume();
    const settle = () => {
      if (settled) return;
      settled = true;
      res.off('close', onClose);
      res.off('drain', onDrain);
      resolve();
    };
    res.on('close', onClose);
    res.on('drain', onDrain);
    options.onStop?.(() => {
      stopping = true;
      abort(new Error('poolview is shutting down'));
    });

    const failed = (err: Error) => {
      if (responding) {
        // A watch cut upstream (or by shutdown) ends cleanly, as at the apiserver's own timeout;
        // anything else must not look complete when it is not.
        if (isWatch && !res.destroyed) res.end();
        else res.destroy();
      } else if (stopping) {
        writeStatus(res, 503, 'ServiceUnavailable', 'poolview is shutting down', { 'retry-after': '1' });
      } else if (!res.destroyed && cancel === undefined) {
        const code = (err as { code?: string }).code ?? '';
        ctx.log.warn({ err: err.message, code, verb: info.verb, resource: info.resource }, 'apiserver request failed');
        // Only when nothing reached the apiserver is a retry safe for every verb.
        const retry: Record<string, string> = CONNECT_ERRORS.has(code) ? { 'retry-after': '1' } : {};
        writeStatus(res, 503, 'ServiceUnavailable', `error trying to reach the apiserver: ${err.message}`, retry);
      }
      settle();
    };

    try {
      forwardVia.dispatcher.dispatch(
        {
          origin: upstream.url.origin,
          path: upstreamPath(upstream, req.url ?? '/'),
          method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
          headers: forwardHeaders(req, forwardVia),
          body: hasBody ? req : null,
          // The apiserver ends a short request within its own 60 s; long-running ones (watch,
          // logs, proxy) may wait for their first byte as long as they like.
          headersTimeout: isLongRunning(info) ? 0 : PASS_THROUGH_HEADERS_TIMEOUT_MS,
          bodyTimeout: 0,
        },
        {
          onRequestStart(c) {
            controller = c;
            if (cancel) c.abort(cancel);
          },
          onResponseStart(_c, statusCode, headers) {
            if (statusCode < 200) return; // 1xx are hop-by-hop
            responding = true;
            res.writeHead(statusCode, responseHeaders(headers));
            // A streamed response (watch, logs -f) must show its headers before the first event.
            if (headers['content-length'] === undefined) res.flushHeaders();
          },
          onResponseData(c, chunk) {
            countBytes?.(chunk.length);
            if (!res.write(chunk)) c.pause();
          },
          onResponseEnd() {
            res.end();
            settle();
          },
          onResponseError(_c, err) {
            failed(err);
          },
        },
      );
    } catch (err) {
      failed(err as Error);
    }
  });
}

/** Every request being served, so shutdown can end watches cleanly and wait for the rest. */
export class OpenRequests {
  private readonly open = new Map<ServerResponse, { watch: boolean; stop?: () => void }>();
  private readonly idleWaiters: Array<() => void> = [];

  add(res: ServerResponse, watch: boolean): void {
    this.open.set(res, { watch });
  }

  setStop(res: ServerResponse, stop: () => void): void {
    const entry = this.open.get(res);
    if (entry) entry.stop = stop;
  }

  delete(res: ServerResponse): void {
    this.open.delete(res);
    if (this.open.size === 0) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  get size(): number {
    return this.open.size;
  }

  /** Ends every pass-through watch as the apiserver does at its timeout: a clean end of stream. */
  endWatches(): void {
    for (const entry of this.open.values()) if (entry.watch) entry.stop?.();
  }

  /** Resolves when nothing is open or after timeoutMs; returns whether everything finished. */
  async idle(timeoutMs: number): Promise<boolean> {
    if (this.open.size === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      new Promise<boolean>((resolve) => this.idleWaiters.push(() => resolve(true))),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    return finished;
  }

  destroyAll(): void {
    for (const res of this.open.keys()) res.destroy();
  }
}

export interface ProxyHandlerDeps {
  upstream: Upstream;
  intercept: Interceptor;
  anonymousRequests: AnonymousRequests;
  metrics: ProxyMetrics;
  log: Logger;
  open: OpenRequests;
}

/** Drops impersonation headers: poolview's own identity must not be lent further than itself. */
export function stripImpersonation(req: IncomingMessage): void {
  for (const name of Object.keys(req.headers)) if (name.startsWith('impersonate-')) delete req.headers[name];
}

/** How this request goes upstream under --anonymous-requests, or null when it must be refused. */
export function forwardViaFor(req: IncomingMessage, upstream: Upstream, policy: AnonymousRequests): ForwardVia | null {
  if (req.headers.authorization) return { dispatcher: upstream.clientDispatcher, headers: {} };
  switch (policy) {
    case 'reject':
      return null;
    case 'proxy-identity':
      stripImpersonation(req);
      return { dispatcher: upstream.ownDispatcher, headers: upstream.ownHeaders() };
    default:
      return { dispatcher: upstream.clientDispatcher, headers: {} };
  }
}

/** Classify → account → intercept or forward, for one client request. */
export function createProxyHandler(deps: ProxyHandlerDeps): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const { upstream, intercept, anonymousRequests, metrics, log, open } = deps;
  // Bound once: the downstream counter moves on every chunk of every stream.
  const downstream = metrics.proxiedBytes.labels({ direction: 'downstream' });
  const upstreamBytes = metrics.proxiedBytes.labels({ direction: 'upstream' });
  const countBytes = (bytes: number) => downstream.inc(bytes);

  return async (req, res) => {
    const started = performance.now();
    const info: RequestInfo = resolveRequestInfo(req.method ?? 'GET', req.url ?? '/');
    const component = componentOf(req.headers['user-agent']);
    const isWatch = info.verb === 'watch';
    const labels = { component: componentLabel(component), verb: verbLabel(info.verb), resource: resourceLabel(info.resource, info.isResourceRequest) };

    metrics.requestsInFlight.inc(labels);
    if (isWatch) metrics.openWatches.inc({ component: labels.component, resource: labels.resource });
    open.add(res, isWatch);
    res.once('close', () => {
      open.delete(res);
      const code = res.headersSent ? res.statusCode : 0;
      const seconds = (performance.now() - started) / 1000;
      metrics.requestsInFlight.dec(labels);
      metrics.requestsTotal.inc({ ...labels, code: String(code) });
      if (isWatch) metrics.openWatches.dec({ component: labels.component, resource: labels.resource });
      else metrics.requestDuration.observe({ verb: labels.verb }, seconds);
      if (log.isLevelEnabled('debug')) {
        log.debug({ component, verb: info.verb, resource: info.resource, subresource: info.subresource || undefined, namespace: info.namespace || undefined, code, ms: Math.round(seconds * 1000) }, 'request');
      }
    });
    const forwardVia = forwardViaFor(req, upstream, anonymousRequests);
    if (!forwardVia) {
      writeStatus(res, 401, 'Unauthorized', 'Unauthorized');
      return;
    }
    const ctx: InterceptContext = { req, res, info, component, upstream, forwardVia, log };
    try {
      if (await intercept(ctx)) return;
    } catch (err) {
      log.error({ err, verb: info.verb, resource: info.resource }, 'view engine failed on a request');
      writeStatus(res, 500, 'InternalError', `poolview: ${(err as Error).message}`);
      return;
    }
    // Request bodies are small API objects; their declared length is count enough.
    const length = Number(req.headers['content-length']);
    if (length > 0) upstreamBytes.inc(length);
    await forwardRequest(ctx, { onDownstreamBytes: countBytes, onStop: (stop) => open.setStop(res, stop) });
  };
}

export interface ProxyServerOptions {
  handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  https?: { cert: Buffer; key: Buffer };
  /** While true, requests on connections still open get 503 and the connection closes (shutdown). */
  closing: () => boolean;
}

/** An HTTP(S) server that hands every request, body unread, to the proxy handler. */
export function createProxyServer(options: ProxyServerOptions): HttpServer | HttpsServer {
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    if (!toOriginForm(req)) {
      // Go's server answers `OPTIONS *` itself with an empty 200; any other such target is malformed.
      if (req.method === 'OPTIONS' && req.url === '*') {
        res.writeHead(200, { 'content-length': 0 });
        res.end();
      } else writeStatus(res, 400, 'BadRequest', `poolview: cannot serve request target "${String(req.url).slice(0, 100)}"`);
      return;
    }
    if (options.closing()) {
      res.shouldKeepAlive = false;
      writeStatus(res, 503, 'ServiceUnavailable', 'poolview is shutting down');
      return;
    }
    // The handler answers its own failures; anything that still escapes must not end the process.
    options.handler(req, res).catch((err: Error) => writeStatus(res, 500, 'InternalError', `poolview: ${err.message}`));
  };
  const server = options.https ? createHttpsServer({ cert: options.https.cert, key: options.https.key }, onRequest) : createHttpServer(onRequest);
  // A proxy's CONNECT is not an API request (without a listener Node would drop the socket unanswered).
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    const body = statusBody(405, 'MethodNotAllowed', 'poolview: CONNECT is not supported');
    socket.end(`HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });
  // Watches and exec sessions are long; the apiserver and the client decide when they end.
  server.requestTimeout = 0;
  server.timeout = 0;
  // Node agents keep their connections; a short idle timeout only makes them reconnect.
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  return server;
}
