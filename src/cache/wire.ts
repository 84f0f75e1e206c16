// The apiserver's JSON as the cache writes it: typed objects, Status failures, whole answers.
import type { Responder } from './serve.js';
import type { CachedObject } from './store.js';
import { apiVersionOf, type CachedResource } from './resources.js';

/** How long a read at a revision the cache has not reached waits (the apiserver waits 3 s too). */
export const WAIT_FOR_REVISION_MS = 3_000;

export const JSON_HEADERS = { 'content-type': 'application/json', 'cache-control': 'no-cache, private' };

export { statusBody as statusJson } from '../status.js';

export function sendText(out: Responder, status: number, body: string): void {
  out.begin(status, { ...JSON_HEADERS, 'content-length': String(Buffer.byteLength(body)) });
  out.write(body);
  out.end();
}

export function objectText(r: CachedResource, obj: CachedObject): string {
  return `{"kind":"${r.kind}","apiVersion":"${apiVersionOf(r)}",${obj.json.slice(1)}`;
}
