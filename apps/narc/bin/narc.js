#!/usr/bin/env node
// Runs the build in dist/ (`pnpm build` at the repository root makes it and
// the packages it imports).
import process from 'node:process';

try {
  await import('../dist/main.js');
} catch (error) {
  if (error?.code !== 'ERR_MODULE_NOT_FOUND') throw error;
  process.stderr.write(`narc: ${error.message}\nnarc: build it first: pnpm build\n`);
  process.exit(1);
}
