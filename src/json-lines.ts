// Splits a Kubernetes JSON watch stream into its events. The apiserver writes each WatchEvent with
// Go's json.Encoder, so every event ends with '\n' and no event contains a raw newline.

export async function* jsonLines(body: AsyncIterable<Buffer | string>): AsyncGenerator<string> {
  let pending = '';
  for await (const chunk of body) {
    pending += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    let start = 0;
    let end: number;
    while ((end = pending.indexOf('\n', start)) !== -1) {
      if (end > start) yield pending.slice(start, end);
      start = end + 1;
    }
    pending = start === 0 ? pending : pending.slice(start);
  }
  if (pending.trim() !== '') yield pending;
}
