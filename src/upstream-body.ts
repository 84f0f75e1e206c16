// Bounds and decoding for the bodies of poolview's own non-watch requests upstream (LISTs, seeds):
// gzip undone, size and time limited, so a broken or hostile upstream costs an error, not the node.
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';

/** Upstream must answer with headers within this long (watches too: the apiserver sends theirs at once). */
export const UPSTREAM_HEADERS_TIMEOUT_MS = 30_000;
/** A LIST or seed body that sends nothing for this long is cut (watches have no such bound). */
export const UPSTREAM_BODY_IDLE_MS = 30_000;
/** The longest a LIST or seed body may take to arrive whole. */
export const UPSTREAM_BODY_DEADLINE_MS = 120_000;
/** The largest LIST body decoded (256 MiB, about 60,000 EndpointSlices of 6 endpoints as JSON). */
export const MAX_LIST_BYTES = 256 * 1024 * 1024;

/** The body as sent before Content-Encoding: gzip is undone here (undici leaves it to the caller). */
export function decodedBody(headers: Record<string, string | string[] | undefined>, raw: Readable): Readable {
  if (!String(headers['content-encoding'] ?? '').includes('gzip')) return raw;
  const body = raw.pipe(createGunzip());
  // A broken stream must fail the read, not the process.
  raw.once('error', (err) => body.destroy(err));
  return body;
}

/** A body over its limit, or one that took too long: the request fails with a clear error. */
export class BodyLimitError extends Error {
  override name = 'BodyLimitError';
}

/** A whole (non-watch) body, decompressed, bounded in size and time. */
export async function readAll(body: Readable, maxBytes = MAX_LIST_BYTES): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  const deadline = setTimeout(() => body.destroy(new BodyLimitError(`upstream body took longer than ${UPSTREAM_BODY_DEADLINE_MS / 1000}s`)), UPSTREAM_BODY_DEADLINE_MS);
  try {
    for await (const chunk of body) {
      size += (chunk as Buffer).length;
      if (size > maxBytes) {
        body.destroy();
        throw new BodyLimitError(`upstream body exceeds ${maxBytes} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
  } finally {
    clearTimeout(deadline);
  }
  return Buffer.concat(chunks).toString('utf8');
}

