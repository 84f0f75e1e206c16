// Reads a stream of concatenated JSON values (kubectl get --watch -o json prints one pretty-printed
// object after another) and hands over each complete value.
import type { Readable } from 'node:stream';

/** Calls `onValue` with every complete top-level JSON object or array that arrives on `stream`. */
export function onJsonValues(stream: Readable, onValue: (value: unknown) => void): void {
  let buf = '';
  let depth = 0;
  let inString = false;
  let escaped = false;
  let start = -1;
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const offset = buf.length;
    buf += chunk;
    for (let i = offset; i < buf.length; i++) {
      const c = buf[i];
      if (inString) {
        if (escaped) escaped = false;
        else if (c === '\\') escaped = true;
        else if (c === '"') inString = false;
      } else if (c === '"') inString = true;
      else if (c === '{' || c === '[') {
        if (depth++ === 0) start = i;
      } else if ((c === '}' || c === ']') && --depth === 0) {
        onValue(JSON.parse(buf.slice(start, i + 1)));
        buf = buf.slice(i + 1);
        i = -1;
      }
    }
  });
}

/** Collects values from `stream`; `next(pred)` resolves with the first (past or future) match. */
export class JsonValueQueue<T = unknown> {
  readonly values: T[] = [];
  private waiters: { pred: (v: T) => boolean; resolve: (v: T) => void }[] = [];

  constructor(stream: Readable) {
    onJsonValues(stream, (v) => {
      this.values.push(v as T);
      this.waiters = this.waiters.filter((w) => {
        if (!w.pred(v as T)) return true;
        w.resolve(v as T);
        return false;
      });
    });
  }

  /** The first value matching `pred`, waiting up to `timeoutMs` for it. */
  next(pred: (v: T) => boolean, timeoutMs = 30_000): Promise<T> {
    const seen = this.values.find(pred);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`no matching JSON value within ${timeoutMs} ms (got ${this.values.length} values)`));
      }, timeoutMs);
      const done = (v: T): void => {
        clearTimeout(timer);
        resolve(v);
      };
      this.waiters.push({ pred, resolve: done });
    });
  }
}
