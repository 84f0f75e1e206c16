// The background writes of a real cluster, for e2e tests: node lease renewals (kubelets) and
// EndpointSlice updates of other Services (pods starting, stopping, changing readiness).
import type { Cluster } from './cluster.js';
import { sleep } from './processes.js';

export interface BackgroundWriter {
  writes(): number;
  /** Stops writing and deletes what it wrote. */
  stop(): Promise<void>;
}

/** Repeats `write` every `intervalMs` (from the start of one to the next) until stopped. */
function every(intervalMs: number, write: () => Promise<unknown>, cleanup: () => Promise<unknown>): BackgroundWriter {
  let writes = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const started = Date.now();
      try {
        await write();
        writes++;
      } catch {
        // the next round tries again
      }
      await sleep(Math.max(0, intervalMs - (Date.now() - started)));
    }
  })();
  return {
    writes: () => writes,
    stop: async () => {
      stopped = true;
      await loop;
      await cleanup().catch(() => {});
    },
  };
}

/** Renews a node Lease every ~200 ms, as the node's kubelet would, so upstream revisions keep moving. */
export function startLeaseWriter(c: Cluster, name: string, intervalMs = 200): BackgroundWriter {
  const microTime = (): string => new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
  return every(
    intervalMs,
    () =>
      c.apply({
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name, namespace: 'kube-node-lease' },
        spec: { holderIdentity: name, leaseDurationSeconds: 40, renewTime: microTime() },
      }),
    () => c.delete('coordination.k8s.io/v1', 'Lease', name, 'kube-node-lease'),
  );
}

/**
 * Updates an EndpointSlice of Service `service` in `namespace` every `intervalMs`, flipping one
 * endpoint's readiness, as an endpointslice controller does when a pod's readiness changes.
 */
export function startSliceChurn(c: Cluster, namespace: string, service: string, nodeName: string, intervalMs = 1000): BackgroundWriter {
  let ready = true;
  return every(
    intervalMs,
    () => {
      ready = !ready;
      return c.createEndpointSlice(namespace, `${service}-churn`, {
        service,
        ports: [{ name: 'http', port: 8080 }],
        endpoints: [
          { ip: '10.244.200.1', nodeName },
          { ip: '10.244.200.2', nodeName, ready },
        ],
      });
    },
    () => c.delete('discovery.k8s.io/v1', 'EndpointSlice', `${service}-churn`, namespace),
  );
}
