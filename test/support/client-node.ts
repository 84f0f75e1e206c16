// @kubernetes/client-node set up as a node agent through poolview: its User-Agent on every request.
import { KubeConfig } from '@kubernetes/client-node';
import type { Cluster } from './cluster.js';

/** A KubeConfig for `server` as admin whose requests (lists and watches) carry `userAgent`. */
export function kubeConfigAs(cluster: Cluster, server: string, userAgent: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfig('admin', server));
  // client-node has no User-Agent option; an authenticator may add headers to every request.
  kc.addAuthenticator({
    isAuthProvider: () => true,
    applyAuthentication: async (_user, opts) => {
      const o = opts as { headers?: Record<string, string> };
      o.headers = { ...o.headers, 'User-Agent': userAgent };
    },
  });
  return kc;
}
