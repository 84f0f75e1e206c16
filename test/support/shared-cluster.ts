// How an e2e test file gets the control plane that vitest's global setup started once for all.
import { inject } from 'vitest';
import { Cluster, type ClusterInfo } from './cluster.js';

declare module 'vitest' {
  export interface ProvidedContext {
    poolviewCluster: ClusterInfo;
  }
}

let shared: Cluster | undefined;

/** The shared control plane (one handle per test file/worker; the global setup owns and stops it). */
export function sharedCluster(): Cluster {
  shared ??= new Cluster(inject('poolviewCluster'));
  return shared;
}

/** A DNS-label-safe unique name, e.g. uniqueName('pt') → "pt-k3x9q2". */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
}
