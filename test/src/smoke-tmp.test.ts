import { it, expect } from 'vitest';
import { startHarness, call } from './proxy-harness.js';
it('smoke', async () => {
  const h = await startHarness();
  try {
    h.fake.create('services', { metadata: { name: 'a', namespace: 'default' }, spec: { ports: [{ port: 80 }] } });
    for (const p of ['/version', '/api/v1/namespaces/default/services', '/api/v1/namespaces/default/services/a', '/api/v1/namespaces/default/services/zz', '/apis']) {
      const a = await call(h.pv.url, p); const b = await call(h.fake.url, p);
      console.log(p, a.status, b.status, a.body === b.body, a.headers, b.headers);
    }
    console.log((await call(h.pv.healthUrl, '/readyz?verbose')).body);
  } finally { await h.close(); }
});
