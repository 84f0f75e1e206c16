// CPU profiles of poolview for missed budgets: in-process with the inspector (poolview runs on the
// bench's main thread; clients and upstream run in worker threads, which this profiler does not
// see), or written by a child poolview (--cpu-prof, --heap-prof); and their top self-time functions.
import { Session } from 'node:inspector/promises';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { dirname, relative, resolve } from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface CpuProfile {
  nodes: Array<{ id: number; callFrame: CallFrame; hitCount?: number }>;
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}
interface HeapNode {
  callFrame: CallFrame;
  selfSize: number;
  children: HeapNode[];
}

export interface TopEntry {
  function: string;
  where: string;
  selfMs?: number;
  selfMiB?: number;
  percent: number;
}

const maps = new Map<string, SourceMap | null>();

/** The TypeScript source line of a compiled frame (via its .js.map), else the compiled one. */
function where(frame: CallFrame, root: string): string {
  if (!frame.url) return '(native)';
  const path = frame.url.replace(/^file:\/\//, '');
  if (!path.startsWith('/')) return `${path}:${frame.lineNumber + 1}`;
  let map = maps.get(path);
  if (map === undefined) {
    try {
      map = existsSync(`${path}.map`) ? new SourceMap(JSON.parse(readFileSync(`${path}.map`, 'utf8'))) : null;
    } catch {
      map = null;
    }
    maps.set(path, map);
  }
  const entry = map?.findEntry(frame.lineNumber, frame.columnNumber) as { originalSource?: string; originalLine?: number } | undefined;
  if (entry?.originalSource) {
    const source = entry.originalSource.startsWith('file://') ? entry.originalSource.slice(7) : resolve(dirname(path), entry.originalSource);
    return `${relative(root, source)}:${(entry.originalLine ?? 0) + 1}`;
  }
  return `${relative(root, path)}:${frame.lineNumber + 1}`;
}

/** Self time by function (nodes of the same function merged), idle excluded. */
export function topSelfTime(profile: CpuProfile, root: string, n = 5): TopEntry[] {
  const byNode = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    // timeDeltas[i+1] is the time spent in samples[i] (the delta before the next sample).
    const dt = deltas[i + 1] ?? 0;
    byNode.set(samples[i], (byNode.get(samples[i]) ?? 0) + dt);
  }
  const byFunction = new Map<string, { function: string; where: string; us: number }>();
  let total = 0;
  for (const node of profile.nodes) {
    const us = byNode.get(node.id) ?? 0;
    const name = node.callFrame.functionName || '(anonymous)';
    if (name === '(idle)' || us === 0) continue;
    total += us;
    const loc = where(node.callFrame, root);
    const key = `${name}@${loc}`;
    const entry = byFunction.get(key) ?? { function: name, where: loc, us: 0 };
    entry.us += us;
    byFunction.set(key, entry);
  }
  return [...byFunction.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, n)
    .map((e) => ({ function: e.function, where: e.where, selfMs: Math.round(e.us / 100) / 10, percent: Math.round((1000 * e.us) / Math.max(1, total)) / 10 }));
}

/** Retained (sampled) bytes by allocating function, from a --heap-prof profile. */
export function topSelfSize(profile: { head: HeapNode }, root: string, n = 5): TopEntry[] {
  const byFunction = new Map<string, { function: string; where: string; bytes: number }>();
  let total = 0;
  const walk = (node: HeapNode) => {
    if (node.selfSize > 0) {
      const name = node.callFrame.functionName || '(anonymous)';
      const loc = where(node.callFrame, root);
      const key = `${name}@${loc}`;
      const entry = byFunction.get(key) ?? { function: name, where: loc, bytes: 0 };
      entry.bytes += node.selfSize;
      byFunction.set(key, entry);
      total += node.selfSize;
    }
    for (const child of node.children) walk(child);
  };
  walk(profile.head);
  return [...byFunction.values()]
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, n)
    .map((e) => ({ function: e.function, where: e.where, selfMiB: Math.round(e.bytes / 1048576 * 10) / 10, percent: Math.round((1000 * e.bytes) / Math.max(1, total)) / 10 }));
}

/** Runs fn under the main thread's CPU profiler and writes the profile to `file`. */
export async function profileInProcess<T>(file: string, root: string, fn: () => Promise<T>): Promise<{ result: T; top: TopEntry[] }> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
  let result: T;
  try {
    result = await fn();
  } finally {
    const { profile } = (await session.post('Profiler.stop')) as { profile: CpuProfile };
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
    (globalThis as any).__lastProfile = profile;
  }
  const profile = (globalThis as any).__lastProfile as CpuProfile;
  delete (globalThis as any).__lastProfile;
  return { result, top: topSelfTime(profile, root) };
}

/** A minimal Chrome DevTools Protocol client for a child started with --inspect-brk. */
export class Inspector {
  private next = 1;
  private readonly waiting = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();

  private constructor(private readonly ws: import('undici').WebSocket) {
    ws.addEventListener('message', (ev) => {
      const msg = JSON.parse(String(ev.data)) as { id?: number; result?: unknown; error?: { message: string } };
      if (msg.id === undefined) return;
      const w = this.waiting.get(msg.id);
      this.waiting.delete(msg.id);
      if (msg.error) w?.reject(new Error(msg.error.message));
      else w?.resolve(msg.result);
    });
  }

  static async connect(url: string): Promise<Inspector> {
    const { WebSocket } = await import('undici');
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener('open', () => resolve());
      ws.addEventListener('error', () => reject(new Error(`cannot connect to ${url}`)));
    });
    return new Inspector(ws);
  }

  send<T = any>(method: string, params: object = {}): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  close(): void {
    this.ws.close();
  }
}
