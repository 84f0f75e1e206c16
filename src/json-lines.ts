// Splits a Kubernetes JSON watch stream into its events. The apiserver writes each WatchEvent with
// Go's json.Encoder, so every event ends with '\n' and no event contains a raw newline.
//
// Bytes are kept as they came and decoded once per whole line, so a multi-byte character split
// between two chunks survives (pool names in Chinese are common). Each new chunk is scanned once,
// and one event may not exceed MAX_EVENT_BYTES: etcd refuses objects over 1.5 MiB, so a longer line
// is a broken or hostile stream, and buffering it would take the node's memory with it.

/** The longest watch event accepted (16 MiB): ten times the largest object etcd stores. */
export const MAX_EVENT_BYTES = 16 * 1024 * 1024;

/** A watch event longer than the limit: the stream is ended, the caller re-watches or reports. */
export class EventTooLargeError extends Error {
  override name = 'EventTooLargeError';
  constructor(readonly limit: number) {
    super(`watch event exceeds ${limit} bytes`);
  }
}

/** The events of a watch stream, a batch per chunk read: what arrived together is handled together. */
export async function* jsonLineBatches(body: AsyncIterable<Buffer | string>, maxBytes = MAX_EVENT_BYTES): AsyncGenerator<string[]> {
  let pending: Buffer[] = []; // the start of an unfinished line, chunk by chunk
  let pendingBytes = 0;
  for await (const raw of body) {
    const chunk = typeof raw === 'string' ? Buffer.from(raw) : raw;
    const lines: string[] = [];
    let start = 0;
    let end: number;
    while ((end = chunk.indexOf(10, start)) !== -1) {
      if (pendingBytes + end - start > maxBytes) throw new EventTooLargeError(maxBytes);
      const line = pendingBytes === 0 ? chunk.toString('utf8', start, end) : Buffer.concat([...pending, chunk.subarray(start, end)]).toString('utf8');
      pending = [];
      pendingBytes = 0;
      if (line.length > 0) lines.push(line);
      start = end + 1;
    }
    if (start < chunk.length) {
      pendingBytes += chunk.length - start;
      if (pendingBytes > maxBytes) throw new EventTooLargeError(maxBytes);
      pending.push(chunk.subarray(start));
    }
    if (lines.length > 0) yield lines;
  }
  const rest = Buffer.concat(pending).toString('utf8');
  if (rest.trim() !== '') yield [rest];
}

/** The events of a watch stream, one at a time. */
export async function* jsonLines(body: AsyncIterable<Buffer | string>, maxBytes = MAX_EVENT_BYTES): AsyncGenerator<string> {
  for await (const lines of jsonLineBatches(body, maxBytes)) yield* lines;
}
