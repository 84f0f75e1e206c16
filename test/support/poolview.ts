// poolview in-process against the e2e control plane, with its own identity and a log file.
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { startViews, type ViewOptions } from '../../src/views/index.js';
import { startPoolview, type PoolviewOptions, type RunningPoolview } from '../../src/app.js';
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
    /** The targeting ConfigMap (default kube-system/yurt-hub-cfg, shared by every test of the run). */
    configMap?: { namespace: string; name: string };
    scopeChangeWaitMs?: number;
    /** Auto-listen's debounce of endpoint pool changes (default 3 s). */
    autoListenDebounceMs?: number;
    /** The apiserver URL poolview dials (e.g. a counting relay in front of it); default the apiserver. */
    server?: string;
    /** Readiness probe interval (default 1 s here; poolview's own default is 5 s). */
    probeIntervalMs?: number;
  },
  /** Other options (the in-cluster filters' flags); a dummyIfIp is named in the certificate too. */
  extra: Partial<PoolviewOptions> = {},
): Promise<TestPoolview> {
  const bindAddress = opts.bindAddress ?? '127.0.0.1';
  const ips = [bindAddress, extra.dummyIfIp ?? '127.0.0.1'].filter((ip) => ip !== '127.0.0.1');
  const tls = await cluster.issueServingCert(`poolview-${opts.nodeName}`, [...new Set(ips)]);
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
      configMapName: opts.configMap?.name,
      configMapNamespace: opts.configMap?.namespace,
      scopeChangeWaitMs: opts.scopeChangeWaitMs,
      ...extra,
    },
    {
      logger,
      probeIntervalMs: opts.probeIntervalMs ?? 1_000,
      ...(opts.autoListenDebounceMs === undefined ? {} : { startViews: (o: ViewOptions) => startViews({ ...o, autoListenDebounceMs: opts.autoListenDebounceMs }) }),
    },
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
