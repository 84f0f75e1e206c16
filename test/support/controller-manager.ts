// A real kube-controller-manager next to a running control plane, with only the CSR signing
// controller: it signs approved requests for the kubernetes.io/* signers (kubelet-serving among them)
// with the cluster CA, as --cluster-signing-cert-file/--cluster-signing-key-file do in a real cluster.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Cluster } from './cluster.js';
import { poll, PollAbort, startProcess, type ManagedProcess } from './processes.js';

export interface ControllerManager {
  process: ManagedProcess;
  stop(): Promise<void>;
}

/** Starts kube-controller-manager (signing controller only, no leader election, no serving port). */
export async function startControllerManager(cluster: Cluster): Promise<ControllerManager> {
  const binary = join(cluster.binDir, 'kube-controller-manager');
  if (!existsSync(binary)) throw new Error(`${binary} is missing: run test/cluster/build.sh (it builds kube-controller-manager too)`);
  const pki = join(cluster.workDir, 'pki'); // the cluster CA of test/support/cluster.ts
  const logFile = join(cluster.workDir, `kube-controller-manager-${Date.now()}.log`);
  const kcm = startProcess(
    'kube-controller-manager',
    [
      binary,
      `--kubeconfig=${cluster.kubeconfig('admin')}`,
      '--controllers=certificatesigningrequest-signing-controller',
      `--cluster-signing-cert-file=${join(pki, 'ca.crt')}`,
      `--cluster-signing-key-file=${join(pki, 'ca.key')}`,
      '--leader-elect=false',
      '--secure-port=0', // no HTTPS port: nothing here scrapes or probes it
      '--v=2',
    ],
    { logFile },
  );
  await poll('kube-controller-manager signing controller started', () => {
    if (!kcm.running()) throw new PollAbort(`kube-controller-manager exited:\n${kcm.logTail()}`);
    const log = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
    return /Starting certificate controller.*csrsigning-kubelet-serving/.test(log);
  }, 60_000, 200).catch((err: Error) => {
    throw new Error(err instanceof PollAbort ? err.message : `${err.message}\n--- kube-controller-manager log ---\n${kcm.logTail()}`);
  });
  return { process: kcm, stop: () => kcm.stop() };
}
