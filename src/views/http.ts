// Small HTTP helpers for the requests the view engine answers itself.
import { request, type Dispatcher } from 'undici';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import type { ServerResponse } from 'node:http';
import type { InterceptContext, RequestInfo } from '../types.js';
import { forwardHeaders, responseHeaders } from '../server.js';

/** The client's headers for a JSON request of ours upstream: its own credentials, never poolview's. */
function upstreamHeaders(ctx: InterceptContext): string[] {
  return forwardHeaders(ctx.req, {
    ...ctx.forwardVia,
    headers: { ...ctx.forwardVia.headers, accept: 'application/json', 'accept-encoding': ctx.info.verb === 'watch' ? 'identity' : 'gzip' },
  });
}

export interface UpstreamResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}

export async function getUpstream(ctx: InterceptContext, pathAndQuery: string, signal: AbortSignal): Promise<UpstreamResponse> {
  const res = await request(new URL(pathAndQuery, ctx.upstream.url), {
    method: 'GET',
    dispatcher: ctx.forwardVia.dispatcher as Dispatcher,
    headers: upstreamHeaders(ctx),
    signal,
  });
  const gzip = String(res.headers['content-encoding'] ?? '').includes('gzip');
  const body = gzip ? (res.body.pipe(createGunzip()) as Readable) : (res.body as Readable);
  return { statusCode: res.statusCode, headers: res.headers, body };
}

/**
 * Filtered answers are decoded whole (the body, its objects and the answer in memory at once): a
 * burst of large LISTs, as when every agent on a node restarts, takes turns to bound the peak.
 */
const DECODE_SLOTS = 1;
let decoding = 0;
const decodeQueue: Array<() => void> = [];

export async function withDecodeSlot<T>(fn: () => Promise<T>): Promise<T> {
  if (decoding >= DECODE_SLOTS) await new Promise<void>((resolve) => decodeQueue.push(resolve));
  else decoding++;
  try {
    return await fn();
  } finally {
    const next = decodeQueue.shift();
    if (next) next();
    else decoding--;
  }
}

export async function readAll(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Passes an upstream error (or any non-JSON answer) to the client as it came. */
export async function relay(res: ServerResponse, upstream: UpstreamResponse): Promise<void> {
  const { 'content-encoding': _decoded, 'content-length': _length, ...headers } = responseHeaders(upstream.headers);
  res.writeHead(upstream.statusCode, headers);
  for await (const chunk of upstream.body) res.write(chunk);
  res.end();
}

export function sendJson(res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
  sendJsonText(res, status, JSON.stringify(body), extra);
}

export function sendJsonText(res: ServerResponse, status: number, text: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...extra });
  res.end(text);
}

export function status(code: number, reason: string, message: string, details?: object): object {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code };
}

/** 404 exactly as the apiserver words it, for objects outside the client's view. */
export function notFound(info: RequestInfo): object {
  const qualified = info.apiGroup ? `${info.resource}.${info.apiGroup}` : info.resource;
  return status(404, 'NotFound', `${qualified} "${info.name}" not found`, {
    name: info.name,
    ...(info.apiGroup ? { group: info.apiGroup } : {}),
    kind: info.resource,
  });
}

export function expired(rv: string, current: number): object {
  return status(410, 'Expired', `too old resource version: ${rv} (${current})`);
}

/**
 * What the client asked for in Accept. Tables are not served for filtered resources: the `as=Table`
 * entries are dropped (kubectl then prints client-side from the plain JSON it also accepts).
 * Metadata-only requests get full objects from upstream, filtered, then projected to metadata.
 */
export function negotiate(accept: string | undefined): { metadataOnly: boolean; acceptable: boolean } {
  const entries = (accept ?? '*/*').split(',').map((e) => e.trim()).filter(Boolean);
  const usable = entries.filter((e) => !/;\s*as=Table/i.test(e));
  if (usable.length === 0) return { metadataOnly: false, acceptable: false };
  return { metadataOnly: /;\s*as=PartialObjectMetadata/i.test(usable[0]), acceptable: true };
}

/** Resolves when the client can take more, or has gone away. */
export function drained(res: ServerResponse): Promise<void> {
  if (!res.writableNeedDrain || res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
