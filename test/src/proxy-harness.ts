// Shared setup for proxy tests: the in-process fake apiserver with poolview in front of it.
import { connect, type Socket } from 'node:net';
import { request, Agent, type Dispatcher } from 'undici';
import { startFakeApiserver, type FakeApiserver, type FakeApiserverOptions } from '../fake/apiserver.js';
import { startPoolview, type PoolviewOptions, type RunningPoolview, type PoolviewDeps } from '../../src/app.js';
import { createLogger } from '../../src/log.js';
import type { ViewService } from '../../src/views/index.js';
import { upstreamFromUrl, type KubeUpstream } from '../../src/upstream.js';

export interface Harness {
  fake: FakeApiserver;
  upstream: KubeUpstream;
  pv: RunningPoolview;
  close(): Promise<void>;
}

/** A view engine that takes over nothing: tests of the bare proxy, with no informers of its own upstream. */
export const noViews: NonNullable<PoolviewDeps['startViews']> = async () =>
  ({ intercept: () => false, readiness: () => [], close: async () => {} }) as unknown as ViewService;

export const quietLogger = () => createLogger(process.env.POOLVIEW_TEST_LOG_LEVEL ?? 'silent');

export async function startHarness(
  opts: { fake?: FakeApiserverOptions; poolview?: Partial<PoolviewOptions>; ownToken?: string; deps?: PoolviewDeps } = {},
): Promise<Harness> {
  const fake = await startFakeApiserver(opts.fake);
  const upstream = upstreamFromUrl(fake.url, opts.ownToken);
  const pv = await startPoolview(
    { nodeName: 'node1', port: 0, healthPort: 0, ...opts.poolview },
    { upstream, logger: quietLogger(), ...opts.deps },
  );
  return {
    fake,
    upstream,
    pv,
    close: async () => {
      await pv.close();
      await upstream.close();
      await fake.close();
    },
  };
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request with a private connection pool, body read as text. */
export async function call(
  base: string,
  path: string,
  init: { method?: Dispatcher.HttpMethod; headers?: Record<string, string>; body?: string; dispatcher?: Dispatcher } = {},
): Promise<Answer> {
  const res = await request(base + path, { method: init.method ?? 'GET', headers: init.headers, body: init.body, dispatcher: init.dispatcher });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

export function newAgent(): Agent {
  return new Agent({ headersTimeout: 0, bodyTimeout: 0, connections: null });
}

export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface UpgradeAnswer {
  status: number;
  head: string;
  socket: Socket;
  /** Bytes after the response head, so far. */
  rest: () => Buffer;
  closed: Promise<void>;
}

/** Sends an Upgrade request over a raw socket and reads the response head. */
export async function upgrade(base: string, path: string, headers: Array<[string, string]>, opts: { head?: Buffer } = {}): Promise<UpgradeAnswer> {
  const url = new URL(base);
  const socket = connect(Number(url.port), url.hostname);
  let buffered = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => (buffered = Buffer.concat([buffered, d])));
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  socket.on('error', () => {});
  await new Promise<void>((r) => socket.once('connect', () => r()));
  const lines = [`POST ${path} HTTP/1.1`, `Host: ${url.host}`, ...headers.map(([k, v]) => `${k}: ${v}`)];
  socket.write(lines.join('\r\n') + '\r\n\r\n');
  if (opts.head) socket.write(opts.head);
  await waitFor(() => buffered.includes('\r\n\r\n') || socket.destroyed, 5_000, 'response head');
  const end = buffered.indexOf('\r\n\r\n');
  const head = buffered.subarray(0, end).toString('latin1');
  const bodyStart = end + 4;
  return {
    status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0),
    head,
    socket,
    rest: () => buffered.subarray(bodyStart),
    closed,
  };
}
