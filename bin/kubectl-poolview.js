#!/usr/bin/env node
// kubectl plugin entry point (`kubectl poolview view --node N`): runs the compiled plugin (npm run build).
import { pluginMain } from '../dist/src/kubectl-plugin.js';

const code = await pluginMain(process.argv.slice(2));
// A piped stdout is written asynchronously: exit once what was written has gone out, or a long
// report is cut short.
process.stdout.write('', () => process.exit(code));
