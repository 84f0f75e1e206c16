// Upgrade requests (exec, attach, port-forward over WebSocket or SPDY) become raw byte tunnels to the
// apiserver: the request head goes upstream with the client's own credentials, then bytes flow both
// ways untouched, the apiserver's answer (101 or an error) included. Failures before the tunnel
// exists are answered with a Status, never left hanging.
import type { IncomingMessage } from 'node:http';
import { connect as tcpConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { Upstream } from './types.js';
import type { AnonymousRequests } from './options.js';
import { hasTunnelTarget, tunnelTargetFor } from './upstream.js';
import { componentOf, resolveRequestInfo } from './request-info.js';
import { componentLabel, resourceLabel, verbLabel, type ProxyMetrics } from './metrics.js';
import { forwardHeaders, forwardViaFor, toOriginForm, upstreamPath } from './server.js';
import { statusBody } from './status.js';

const CONNECT_TIMEOUT_MS = 10_000;
const KEEPALIVE_MS = 30_000;

const REASONS: Record<number, [string, string]> = {
  400: ['Bad Request', 'BadRequest'],
  401: ['Unauthorized', 'Unauthorized'],
  502: ['Bad Gateway', 'BadGateway'],
  503: ['Service Unavailable', 'ServiceUnavailable'],
};

/** A Status error written straight onto the client's socket (no HTTP response object exists here). */
function refuse(socket: Duplex, code: number, message: string): void {
  const [text, reason] = REASONS[code] ?? ['Error', 'InternalError'];
  const body = statusBody(code, reason, message);
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(
    `HTTP/1.1 ${code} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `Cache-Control: no-cache, private\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** The request head as the apiserver must see it: the client's headers (Connection/Upgrade kept), upstream Host. */
function requestHead(req: IncomingMessage, upstream: Upstream, extra: Record<string, string>): string {
  const headers = forwardHeaders(req, { dispatcher: upstream.clientDispatcher, headers: extra });
  let head = `${req.method} ${upstreamPath(upstream, req.url ?? '/')} HTTP/1.1\r\nHost: ${upstream.url.host}\r\n`;
  head += `Connection: ${req.headers.connection ?? 'Upgrade'}\r\nUpgrade: ${req.headers.upgrade ?? ''}\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return head + '\r\n';
}

export interface UpgradeDeps {
  upstream: Upstream;
  anonymousRequests: AnonymousRequests;
  metrics: ProxyMetrics;
  log: Logger;
  /** Open tunnels, so shutdown can close them. */
  tunnels: Set<Duplex>;
}

export function createUpgradeHandler(deps: UpgradeDeps): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const { upstream, anonymousRequests, metrics, log, tunnels } = deps;

  return (req, socket, head) => {
    if (!toOriginForm(req)) {
      refuse(socket, 400, 'poolview: cannot serve this request target');
      return;
    }
    const info = resolveRequestInfo(req.method ?? 'GET', req.url ?? '/');
    const component = componentOf(req.headers['user-agent']);
    const labels = { component: componentLabel(component), verb: verbLabel(info.verb), resource: resourceLabel(info.resource, info.isResourceRequest) };
    let code = 0;
    socket.on('error', () => socket.destroy());

    const forwardVia = forwardViaFor(req, upstream, anonymousRequests);
    if (!forwardVia) {
      metrics.requestsTotal.inc({ ...labels, code: '401' });
      refuse(socket, 401, 'Unauthorized');
      return;
    }
    const own = forwardVia.dispatcher === upstream.ownDispatcher;
    // An Upstream not built by upstream.ts says nothing about TLS material: system CAs, no certificate.
    const target = hasTunnelTarget(upstream) ? upstream.tunnelTarget(own) : tunnelTargetFor(upstream.url);

    let upstreamSocket: Socket;
    if (target.tls) {
      const { servername, ...tls } = target.tls;
      upstreamSocket = tlsConnect({
        host: target.host,
        port: target.port,
        ...tls,
        // SNI carries host names only.
        servername: servername ?? (isIP(target.host) ? undefined : target.host),
        // The upgrade handshake is HTTP/1.1; never let ALPN pick h2.
        ALPNProtocols: ['http/1.1'],
      });
    } else {
      upstreamSocket = tcpConnect({ host: target.host, port: target.port });
    }

    let connected = false;
    tunnels.add(socket);
    metrics.requestsInFlight.inc(labels);
    const started = performance.now();
    const finish = () => {
      if (!tunnels.delete(socket)) return;
      metrics.requestsInFlight.dec(labels);
      metrics.requestsTotal.inc({ ...labels, code: String(code) });
      if (log.isLevelEnabled('debug')) {
        log.debug({ component, verb: info.verb, resource: info.resource, subresource: info.subresource || undefined, code, ms: Math.round(performance.now() - started), upgrade: req.headers.upgrade }, 'tunnel');
      }
    };

    upstreamSocket.setTimeout(CONNECT_TIMEOUT_MS, () => upstreamSocket.destroy(new Error('connect timeout')));
    upstreamSocket.once(target.tls ? 'secureConnect' : 'connect', () => {
      connected = true;
      upstreamSocket.setTimeout(0);
      upstreamSocket.setNoDelay(true);
      upstreamSocket.setKeepAlive(true, KEEPALIVE_MS);
      if ('setKeepAlive' in socket) (socket as Socket).setKeepAlive(true, KEEPALIVE_MS);
      upstreamSocket.write(requestHead(req, upstream, forwardVia.headers));
      if (head.length > 0) upstreamSocket.write(head);
      // The status line of the apiserver's answer, for metrics and the log.
      upstreamSocket.once('data', (chunk: Buffer) => {
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(chunk.subarray(0, 16).toString('latin1'));
        code = m ? Number(m[1]) : 0;
      });
      upstreamSocket.pipe(socket);
      socket.pipe(upstreamSocket);
    });
    upstreamSocket.on('error', (err) => {
      if (!connected) {
        log.warn({ err: err.message, verb: info.verb, resource: info.resource }, 'cannot reach the apiserver for an upgrade request');
        code = 503;
        refuse(socket, 503, `error trying to reach the apiserver: ${err.message}`);
      } else {
        socket.destroy();
      }
    });
    upstreamSocket.on('close', () => {
      if (connected) socket.end();
      finish();
    });
    socket.on('close', () => {
      upstreamSocket.destroy();
      finish();
    });
  };
}
