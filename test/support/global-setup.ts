// vitest global setup of the e2e project: builds (or reuses) the Kubernetes binaries, starts one
// control plane for all e2e files and provides its connection info (see shared-cluster.ts).
import type { TestProject } from 'vitest/node';
import { buildBinaries, startCluster } from './cluster.js';
import './shared-cluster.js'; // ProvidedContext typing

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const say = (line: string): void => console.log(`[e2e] ${line}`);
  let t = Date.now();
  const binDir = await buildBinaries(say);
  say(`binaries ready in ${((Date.now() - t) / 1000).toFixed(1)}s: ${binDir}`);
  t = Date.now();
  const cluster = await startCluster({ binDir, log: say });
  say(`control plane ready in ${((Date.now() - t) / 1000).toFixed(1)}s (${cluster.server}, logs in ${cluster.workDir})`);
  project.provide('poolviewCluster', cluster.info);
  return async () => {
    await cluster.stop();
  };
}
