#!/usr/bin/env node
// kubectl plugin entry point (`kubectl poolview view --node N`): runs the compiled plugin (npm run build).
import { pluginMain } from '../dist/src/kubectl-plugin.js';

const code = await pluginMain(process.argv.slice(2));
process.exit(code);
