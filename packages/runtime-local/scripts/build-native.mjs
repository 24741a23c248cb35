/**
 * Builds the native spawn addon (native/spawn.c) with the system's C compiler
 * into native/build/. Runs at install and at build; it never fails either:
 * without a compiler, Node's headers or glibc >= 2.34, runtime-local uses its
 * Node spawner instead (slower to start processes, otherwise the same).
 *
 * Node-API is a stable ABI: one build serves Node 20, 22 and 24.
 * Set OVERTHERE_NATIVE_BUILD=0 to skip it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(packageDir, 'native', 'spawn.c');
const outputDir = join(packageDir, 'native', 'build');
const output = join(outputDir, 'overthere_spawn.node');

function note(message) {
  process.stderr.write(`@overthere/runtime-local: ${message}\n`);
}

/** Node-API headers: Node's own (under its install prefix), else the node-api-headers package. */
function headerDir() {
  const own = join(dirname(process.execPath), '..', 'include', 'node');
  if (existsSync(join(own, 'node_api.h'))) return own;
  try {
    const require = createRequire(import.meta.url);
    return dirname(require.resolve('node-api-headers/include/node_api.h'));
  } catch {
    return undefined;
  }
}

function build() {
  if (process.env.OVERTHERE_NATIVE_BUILD === '0') return;
  if (process.platform !== 'linux') return;
  if (existsSync(output) && statSync(output).mtimeMs >= statSync(source).mtimeMs) return;
  const headers = headerDir();
  if (headers === undefined) {
    note('no Node-API headers found; the native spawner is not built (the Node spawner is used)');
    return;
  }
  mkdirSync(outputDir, { recursive: true });
  const temp = `${output}.${process.pid}.tmp`;
  const compiler = process.env.CC || 'cc';
  try {
    execFileSync(
      compiler,
      [
        '-O2',
        '-fPIC',
        '-shared',
        '-Wall',
        '-Wextra',
        '-I',
        headers,
        source,
        '-o',
        temp,
        '-pthread',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    renameSync(temp, output);
  } catch (error) {
    const detail = error.stderr?.toString().trim() || error.message;
    note(`the native spawner is not built (the Node spawner is used): ${detail}`);
  }
}

build();
