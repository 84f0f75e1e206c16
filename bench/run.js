#!/usr/bin/env node
// `npm run bench`: builds the app (npm run build) and the bench (bench/tsconfig.json: bench/*.ts, the
// fake apiserver and the e2e control-plane harness, compiled to bench/dist/), then runs
// bench/dist/bench/main.js. Arguments are passed on (--quick, --only=..., --reps=N, --no-profile).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const started = Date.now();

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    process.stderr.write(`bench: ${cmd} ${args.join(' ')} failed (${r.status ?? r.signal})\n`);
    process.exit(r.status ?? 1);
  }
}

const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
run(process.execPath, [tsc, '-p', 'tsconfig.json']); // = npm run build
run(process.execPath, [tsc, '-p', join('bench', 'tsconfig.json')]);
process.stderr.write(`bench: built in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);

const r = spawnSync(
  process.execPath,
  ['--expose-gc', '--max-old-space-size=8192', join(root, 'bench', 'dist', 'bench', 'main.js'), ...process.argv.slice(2)],
  { cwd: root, stdio: 'inherit' },
);
process.stderr.write(`bench: total ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
process.exit(r.status ?? 1);
