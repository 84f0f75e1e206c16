// Shared setup for proxy tests: the in-process fake apiserver with poolview in front of it.
import { request, Agent, type Dispatcher } from 'undici';
import { startFakeApiserver, type FakeApiserver, type FakeApiserverOptions } from '../fake/apiserver.js';
import { startPoolview, type PoolviewOptions, type RunningPoolview, type PoolviewDeps } from '../../src/app.js';
import { createLogger } from '../../src/log.js';
import { upstreamFromUrl, type KubeUpstream } from '../../src/upstream.js';

export interface Harness {
  fake: FakeApiserver;
  upstream: KubeUpstream;
  pv: RunningPoolview;
  close(): Promise<void>;
}

/** A view engine that takes over nothing: tests of the bare proxy, with no informers of its own upstream. */
export const noViews: NonNullable<PoolviewDeps['startViews']> = async () => ({ intercept: () => false, readiness: () => [], close: async () => {} });

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
