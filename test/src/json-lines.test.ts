// The watch line splitter: whole characters across chunk boundaries, bounded lines.
import { describe, expect, it } from 'vitest';
import { EventTooLargeError, jsonLineBatches, jsonLines } from '../../src/json-lines.js';

async function* chunks(...parts: Buffer[]): AsyncGenerator<Buffer> {
  for (const part of parts) yield part;
}

async function collect(body: AsyncIterable<Buffer>, max?: number): Promise<string[]> {
  const out: string[] = [];
  for await (const line of jsonLines(body, max)) out.push(line);
  return out;
}

describe('jsonLines', () => {
  it('keeps a multi-byte character split between two chunks', async () => {
    const bytes = Buffer.from('{"pool":"杭州"}\n{"pool":"上海"}\n');
    // Every split point, including inside each 3-byte character.
    for (let at = 1; at < bytes.length; at++) {
      expect(await collect(chunks(bytes.subarray(0, at), bytes.subarray(at)))).toEqual(['{"pool":"杭州"}', '{"pool":"上海"}']);
    }
  });

  it('joins a line spread over many chunks and batches what arrived together', async () => {
    const batches: string[][] = [];
    for await (const batch of jsonLineBatches(chunks(Buffer.from('{"a":'), Buffer.from('1}\n{"b":2}\n{"c"'), Buffer.from(':3}\n')))) batches.push(batch);
    expect(batches).toEqual([['{"a":1}', '{"b":2}'], ['{"c":3}']]);
  });

  it('cuts a line with no newline at the limit instead of buffering it', async () => {
    const piece = Buffer.alloc(64 * 1024, 'x');
    async function* endless(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 1000; i++) yield piece; // 64 MiB if it were all read
    }
    let read = 0;
    const counted = (async function* () {
      for await (const c of endless()) {
        read += c.length;
        yield c;
      }
    })();
    await expect(collect(counted, 1024 * 1024)).rejects.toBeInstanceOf(EventTooLargeError);
    expect(read).toBeLessThanOrEqual(1024 * 1024 + piece.length);
  });

  it('cuts an over-long line that does end in a newline', async () => {
    await expect(collect(chunks(Buffer.from(`${'y'.repeat(2000)}\n`)), 1000)).rejects.toBeInstanceOf(EventTooLargeError);
  });
});
