// helm for the chart tests: built from the Go module proxy by test/cluster/build-helm.sh (cached
// outside the repo, like the Kubernetes binaries) and run with its own state in a scratch directory.
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBuildScript } from './cluster.js';
import { run, type RunResult } from './processes.js';

export const HELM_BUILD_SCRIPT = resolve(dirname(fileURLToPath(import.meta.url)), '../cluster/build-helm.sh');

/** Path of the helm binary ($POOLVIEW_HELM, else built or found cached by build-helm.sh). */
export async function buildHelm(onProgress: (line: string) => void = (l) => console.log(l)): Promise<string> {
  if (process.env.POOLVIEW_HELM) return process.env.POOLVIEW_HELM;
  return join(await runBuildScript(HELM_BUILD_SCRIPT, onProgress), 'helm');
}

export class Helm {
  constructor(
    readonly binary: string,
    private readonly home: string,
  ) {
    mkdirSync(home, { recursive: true });
  }

  /** Runs helm to completion; never rejects for a non-zero exit. No kubeconfig: nothing reaches a cluster. */
  run(args: string[], opts: { input?: string } = {}): Promise<RunResult> {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      HELM_CACHE_HOME: join(this.home, 'cache'),
      HELM_CONFIG_HOME: join(this.home, 'config'),
      HELM_DATA_HOME: join(this.home, 'data'),
    };
    delete env.KUBECONFIG;
    return run(this.binary, args, { env, input: opts.input, timeoutMs: 120_000 });
  }
}
