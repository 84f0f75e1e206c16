// Request/response messages between the bench's main thread and its worker threads.
import { parentPort, Worker } from 'node:worker_threads';

interface Request {
  id: number;
  op: string;
  args: unknown;
}
interface Response {
  id: number;
  result?: unknown;
  error?: string;
}

export class WorkerClient {
  private next = 1;
  private readonly waiting = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  readonly worker: Worker;

  constructor(url: URL, resourceLimits?: { maxOldGenerationSizeMb?: number }) {
    this.worker = new Worker(url, { resourceLimits });
    this.worker.on('message', (msg: Response) => {
      const w = this.waiting.get(msg.id);
      if (!w) return;
      this.waiting.delete(msg.id);
      if (msg.error !== undefined) w.reject(new Error(msg.error));
      else w.resolve(msg.result);
    });
    this.worker.on('error', (err) => {
      for (const w of this.waiting.values()) w.reject(err);
      this.waiting.clear();
    });
  }

  call<T = any>(op: string, args: unknown = {}, transfer: ArrayBuffer[] = []): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, args } satisfies Request, transfer);
    });
  }

  async terminate(): Promise<void> {
    await this.worker.terminate();
  }
}

export type Handlers = Record<string, (args: any) => unknown | Promise<unknown>>;

/** In a worker: answers the main thread's calls with these handlers. */
export function serve(handlers: Handlers): void {
  parentPort!.on('message', async (msg: Request) => {
    try {
      const handler = handlers[msg.op];
      if (!handler) throw new Error(`unknown op ${msg.op}`);
      const result = await handler(msg.args);
      // A result may carry ArrayBuffers to move rather than copy.
      const transfer = result && typeof result === 'object' && Array.isArray((result as any).__transfer) ? (result as any).__transfer : [];
      if (transfer.length) delete (result as any).__transfer;
      parentPort!.postMessage({ id: msg.id, result } satisfies Response, transfer);
    } catch (err) {
      parentPort!.postMessage({ id: msg.id, error: (err as Error)?.stack ?? String(err) } satisfies Response);
    }
  });
}
