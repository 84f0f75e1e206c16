// Splits a Kubernetes JSON watch stream into its events. The apiserver writes each WatchEvent with
// Go's json.Encoder, so every event ends with '\n' and no event contains a raw newline.

/** The events of a watch stream, a batch per chunk read: what arrived together is handled together. */
export async function* jsonLineBatches(body: AsyncIterable<Buffer | string>): AsyncGenerator<string[]> {
  let pending = '';
  for await (const chunk of body) {
    pending += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    const lines: string[] = [];
    let start = 0;
    let end: number;
    while ((end = pending.indexOf('\n', start)) !== -1) {
      if (end > start) lines.push(pending.slice(start, end));
      start = end + 1;
    }
    pending = start === 0 ? pending : pending.slice(start);
    if (lines.length > 0) yield lines;
  }
  if (pending.trim() !== '') yield [pending];
}

/** The events of a watch stream, one at a time. */
export async function* jsonLines(body: AsyncIterable<Buffer | string>): AsyncGenerator<string> {
  for await (const lines of jsonLineBatches(body)) yield* lines;
}
