// `poolview demo` on the fake apiserver: the scenario runs once and shows each transition.
import { describe, expect, it } from 'vitest';
import { run } from '../../src/commands/demo.js';

describe('poolview demo', () => {
  it('shows shanghai losing and regaining the NodePort and the topology moves, then exits 0', async () => {
    let out = '';
    const io = {
      stdout: { write: (t: string) => (out += t) },
      stderr: { write: (t: string) => (out += t) },
      env: {},
      stopSignal: () => new Promise<string>(() => {}),
    };
    const code = await run(['--fake', '--once', '--interval-ms', '300'], io);
    expect(code).toBe(0);
    expect(out).toContain('[edge-3] kube-proxy got DELETED  Service web');
    expect(out).toContain('[edge-3] kube-proxy got ADDED    Service web');
    // After edge-2 joins shanghai, edge-3's kube-proxy sees its endpoint.
    expect(out).toMatch(/edge-2 moves from hangzhou to shanghai[\s\S]*edge-3 {2}services: api, web {3}endpoints: api→\[edge-2 edge-3\]/);
    expect(out).toContain('stopping');
  }, 60_000);
});
