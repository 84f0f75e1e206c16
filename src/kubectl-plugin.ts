// `kubectl poolview ...`: the kubectl plugin (executable kubectl-poolview, see bin/). kubectl runs it
// with the words after `poolview` and its own environment (KUBECONFIG), so kubectl's conventions
// hold: --kubeconfig and --context after the subcommand, else $KUBECONFIG, else (as `poolview view`)
// the in-cluster config, else ~/.kube/config.
// Only the read-only commands are offered; serving stays `poolview serve` on the node.
import { main, type CliIO } from './cli.js';

export const PLUGIN_HELP = `Usage: kubectl poolview view --node NAME [--component NAME] [--kubeconfig PATH] [--context NAME] [-o json]

Shows what a node's component (kube-proxy by default) sees through poolview, and why each Service or
endpoint left out is left out. Read-only; needs no running poolview. Same as \`poolview view\`:
  kubectl poolview view --help
`;

export async function pluginMain(argv: string[], io: Partial<CliIO> = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '-h' || command === '--help') {
    stdout.write(PLUGIN_HELP);
    return 0;
  }
  if (command !== 'view') {
    (io.stderr ?? process.stderr).write(`kubectl poolview: unknown command "${command}"\n${PLUGIN_HELP}`);
    return 2;
  }
  return main(['view', ...rest], io);
}
