#!/usr/bin/env node
// Entry point: runs the compiled CLI (npm run build) and exits with its code.
import { main } from '../dist/src/cli.js';

const code = await main(process.argv.slice(2));
// A piped stdout is written asynchronously: exit once what was written has gone out, or a long
// report is cut short.
process.stdout.write('', () => process.exit(code));
