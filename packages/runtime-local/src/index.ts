/**
 * @overthere/runtime-local — runs overthere tasks as local processes, each in
 * its own process group, with pipes or a pseudo-terminal, rlimits, started
 * by posix_spawn (a native addon) or a spawner process, and killed by that
 * spawner process when the agent dies.
 */
export { createLocalRuntime } from './local-runtime.js';
export type { LocalRuntimeOptions } from './local-runtime.js';
export { nativeSpawnSupport } from './native-spawn.js';
