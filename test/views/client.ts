// HTTP client helpers of the view tests: a GET and a watch read until a condition, as a component
// (its User-Agent) would do them.
import { request } from 'undici';
import { jsonLineBatches } from '../../src/json-lines.js';
import { expect } from 'vitest';

export async function get(base: string, path: string, ua: string, headers: Record<string, string> = {}) {
  const res = await request(base + path, { headers: { 'user-agent': ua, accept: 'application/json', ...headers } });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) };
}

/** Reads a watch until `until` says stop; returns the events. `act` sees the events as they come. */
export async function watch(base: string, path: string, ua: string, act: (events: any[]) => void | Promise<void>, until: (events: any[]) => boolean) {
  const abort = new AbortController();
  const res = await request(base + path, { headers: { 'user-agent': ua }, signal: abort.signal });
  expect(res.statusCode).toBe(200);
  const events: any[] = [];
  const done = (async () => {
    try {
      for await (const lines of jsonLineBatches(res.body)) {
        for (const line of lines) events.push(JSON.parse(line));
        if (until(events)) break;
      }
    } catch {
      /* aborted */
    }
  })();
  await act(events);
  await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
  abort.abort();
  return events;
}
