// poolview in-process against the e2e control plane, with its own identity and a log file.
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { startPoolview, type RunningPoolview } from '../../src/app.js';
import { createLogger } from '../../src/log.js';
import type { Cluster } from './cluster.js';

export interface TestPoolview extends RunningPoolview {
  /**
   * poolview's HTTPS URL (certificate signed by the cluster CA). Clients use it: client-go does not
   * send bearer tokens to plain-HTTP servers, so only here do requests carry the client's identity.
   */
  httpsUrl: string;
  logFile: string;
}

/**
 * Starts poolview for `nodeName` on free ports (plain and HTTPS), talking to the cluster as the
 * `poolview` identity. `bindAddress` defaults to 127.0.0.1; give a netns' hostIP for kube-proxy
 * inside that namespace.
 * Logs go to <workDir>/poolview-<node>.log at POOLVIEW_E2E_LOG_LEVEL (default info).
 */
export async function startTestPoolview(
  cluster: Cluster,
  opts: {
    nodeName: string;
    nodePoolName?: string;
    bindAddress?: string;
    featureGates?: Record<string, boolean>;
    /** The apiserver URL poolview dials (e.g. a counting relay in front of it); default the apiserver. */
    server?: string;
    /** Readiness probe interval (default 1 s here; poolview's own default is 5 s). */
    probeIntervalMs?: number;
  },
): Promise<TestPoolview> {
  const bindAddress = opts.bindAddress ?? '127.0.0.1';
  const tls = await cluster.issueServingCert(`poolview-${opts.nodeName}`, bindAddress === '127.0.0.1' ? [] : [bindAddress]);
  const logFile = join(cluster.workDir, `poolview-${opts.nodeName}.log`);
  const stream = createWriteStream(logFile, { flags: 'a' });
  const logger = createLogger(process.env.POOLVIEW_E2E_LOG_LEVEL ?? 'info', stream);
  const pv = await startPoolview(
    {
      nodeName: opts.nodeName,
      nodePoolName: opts.nodePoolName,
      kubeconfig: cluster.kubeconfig('poolview', opts.server),
      bindAddress,
      port: 0,
      securePort: 0,
      tlsCertFile: tls.certFile,
      tlsPrivateKeyFile: tls.keyFile,
      healthPort: 0,
      featureGates: opts.featureGates,
    },
    { logger, probeIntervalMs: opts.probeIntervalMs ?? 1_000 },
  ).catch((err: unknown) => {
    stream.end();
    throw err;
  });
  return {
    ...pv,
    httpsUrl: pv.secureUrl!,
    logFile,
    close: async () => {
      await pv.close();
      await new Promise<void>((resolve) => stream.end(resolve));
    },
  };
}
