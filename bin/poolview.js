#!/usr/bin/env node
// Entry point: runs the compiled CLI (npm run build) and exits with its code.
import { main } from '../dist/src/cli.js';

const code = await main(process.argv.slice(2));
process.exit(code);
