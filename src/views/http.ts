// Small HTTP helpers for the requests the view engine answers itself.
import { request, type Dispatcher } from 'undici';
import type { Readable } from 'node:stream';
import type { ServerResponse } from 'node:http';
import type { InterceptContext, RequestInfo } from '../types.js';
import { forwardHeaders, responseHeaders } from '../server.js';
import { resolveRequestInfo } from '../request-info.js';
import { Slots } from '../slots.js';
import { statusObject } from '../status.js';
import { decodedBody, UPSTREAM_BODY_IDLE_MS, UPSTREAM_HEADERS_TIMEOUT_MS } from '../upstream-body.js';
export { readAll, UPSTREAM_BODY_DEADLINE_MS } from '../upstream-body.js';

/**
 * Filtered LISTs and watch seeds are read whole from upstream, each bounded in size and time. Each
 * purpose has its own pool, wide enough that a few stalled upstream bodies leave room for everyone
 * else, narrow enough to bound the bodies held at once; a request that finds its pool full for 20 s
 * gets 503 + Retry-After. Decoding needs no slot: it runs to completion without yielding.
 */
export const listSlots = new Slots('filtered lists', 32, 20_000);
export const seedSlots = new Slots('watch seeds', 32, 20_000);

/** The client's headers for a request of ours upstream: its own credentials, never poolview's. JSON; gzip for lists. */
function requestHeaders(ctx: InterceptContext, watch: boolean): string[] {
  return forwardHeaders(ctx.req, {
    ...ctx.forwardVia,
    headers: { ...ctx.forwardVia.headers, accept: 'application/json', 'accept-encoding': watch ? 'identity' : 'gzip' },
  });
}

export interface UpstreamResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}

export async function getUpstream(ctx: InterceptContext, pathAndQuery: string, signal: AbortSignal): Promise<UpstreamResponse> {
  const url = new URL(pathAndQuery, ctx.upstream.url);
  const watch = resolveRequestInfo('GET', url.pathname + url.search).verb === 'watch';
  const res = await request(url, {
    method: 'GET',
    dispatcher: ctx.forwardVia.dispatcher as Dispatcher,
    headers: requestHeaders(ctx, watch),
    signal,
    headersTimeout: UPSTREAM_HEADERS_TIMEOUT_MS,
    bodyTimeout: watch ? 0 : UPSTREAM_BODY_IDLE_MS,
  });
  return { statusCode: res.statusCode, headers: res.headers, body: decodedBody(res.headers, res.body) };
}

/** Passes an upstream error (or any non-JSON answer) to the client as it came. */
export async function relay(res: ServerResponse, upstream: UpstreamResponse): Promise<void> {
  const { 'content-encoding': _decoded, 'content-length': _length, ...headers } = responseHeaders(upstream.headers);
  res.writeHead(upstream.statusCode, headers);
  for await (const chunk of upstream.body) if (!res.write(chunk)) await drained(res);
  res.end();
}

type Headers = Record<string, string | string[]>;

export function sendJson(res: ServerResponse, status: number, body: unknown, extra: Headers = {}): void {
  sendJsonText(res, status, JSON.stringify(body), extra);
}

export function sendJsonText(res: ServerResponse, status: number, text: string, extra: Headers = {}): void {
  res.writeHead(status, { ...extra, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Upstream's response headers (audit ID, warnings, cache headers) for an answer poolview rewrote. */
export function upstreamHeaders(headers: UpstreamResponse['headers']): Headers {
  const { 'content-encoding': _e, 'content-length': _l, 'content-type': _t, ...kept } = responseHeaders(headers);
  return kept;
}


/** 404 exactly as the apiserver words it, for objects outside the client's view. */
export function notFound(info: RequestInfo): object {
  const qualified = info.apiGroup ? `${info.resource}.${info.apiGroup}` : info.resource;
  return statusObject(404, 'NotFound', `${qualified} "${info.name}" not found`, {
    name: info.name,
    ...(info.apiGroup ? { group: info.apiGroup } : {}),
    kind: info.resource,
  });
}

export function expired(rv: string, current: number): object {
  return statusObject(410, 'Expired', `too old resource version: ${rv} (${current})`);
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
