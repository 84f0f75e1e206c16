// Requests answered as the real kube-apiserver answers them (issue "Hardening"): query values it
// rejects get its own error through poolview's filtered path, not a fresh list; filtered answers keep
// the apiserver's response headers.
import { readFileSync } from 'node:fs';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPoolview, type TestPoolview } from '../support/poolview.js';
import { sharedCluster, uniqueName } from '../support/shared-cluster.js';

const cluster = sharedCluster();
const ns = uniqueName('hard');
const nodeName = uniqueName('hard-node');
const pool = uniqueName('hard-pool');
const KUBE_PROXY = 'kube-proxy/v1.35.4 (linux/amd64) kubernetes/test';
let pv: TestPoolview;
let agent: Agent;

beforeAll(async () => {
  agent = new Agent({ connect: { ca: readFileSync(cluster.caFile) } });
  await cluster.createNamespace(ns);
  await cluster.createNodePool(pool, { nodes: [nodeName] });
  await cluster.createNode(nodeName, { internalIP: '10.250.255.253', pool });
  await cluster.createService(ns, 'web', { ports: [{ name: 'http', port: 80, targetPort: 8080 }] });
  pv = await startTestPoolview(cluster, { nodeName, nodePoolName: pool });
});

afterAll(async () => {
  await pv?.close();
  await agent?.close();
  await cluster.delete('v1', 'Namespace', ns);
  await cluster.delete('v1', 'Node', nodeName);
  await cluster.delete('apps.openyurt.io/v1beta2', 'NodePool', pool);
  await cluster.close();
});

async function ask(base: string, path: string) {
  const res = await request(base + path, {
    dispatcher: agent,
    headers: { authorization: `Bearer ${cluster.tokens.kubeProxy}`, 'user-agent': KUBE_PROXY, accept: 'application/json' },
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

/** What must match: the status, and for a failure the Status reason and message. */
function outcome(answer: { status: number; text: string }) {
  if (answer.status === 200 && !answer.text.startsWith('{"type":"ERROR"')) return { status: 200 };
  const body = JSON.parse(answer.text.split('\n')[0]);
  const status = body.type === 'ERROR' ? body.object : body;
  return { status: answer.status, reason: status.reason, message: status.message, code: status.code };
}

describe('malformed queries get the apiserver\'s own answer', () => {
  const queries = [
    'resourceVersion=abc',
    'resourceVersion=-1',
    'resourceVersionMatch=Bogus&resourceVersion=1',
    'resourceVersionMatch=Exact&resourceVersion=0',
    'resourceVersionMatch=NotOlderThan',
    'limit=abc',
    'sendInitialEvents=true',
    'labelSelector=a%20b%20c',
    'fieldSelector=spec.foo%3Dbar',
    'watch=true&resourceVersion=abc&timeoutSeconds=1',
    'watch=true&resourceVersionMatch=Exact&resourceVersion=1&timeoutSeconds=1',
  ];
  it.each(queries)('services?%s', async (query) => {
    const path = `/api/v1/namespaces/${ns}/services?${query}`;
    const direct = await ask(cluster.server, path);
    const through = await ask(pv.httpsUrl, path);
    expect(outcome(through)).toEqual(outcome(direct));
    // Every one of these is refused by the apiserver: none may turn into a list served by poolview.
    expect(direct.status).not.toBe(200);
  });
});

describe('filtered answers keep the apiserver\'s response headers', () => {
  it('LIST, GET and the 404 of an object outside the view carry Audit-Id and Cache-Control', async () => {
    for (const path of [`/api/v1/namespaces/${ns}/services`, `/api/v1/namespaces/${ns}/services/web`, `/api/v1/namespaces/${ns}/services/absent`]) {
      const direct = await ask(cluster.server, path);
      const through = await ask(pv.httpsUrl, path);
      expect(through.status).toBe(direct.status);
      expect(through.headers['audit-id']).toMatch(/^[0-9a-f-]{36}$/);
      expect(through.headers['audit-id']).not.toBe(direct.headers['audit-id']);
      expect(through.headers['cache-control']).toBe(direct.headers['cache-control']);
      expect(through.headers['content-type']).toBe('application/json');
    }
  });
});
