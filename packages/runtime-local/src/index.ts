/**
 * @overthere/runtime-local — runs overthere tasks as local processes, each in
 * its own process group, with pipes or a pseudo-terminal, rlimits, and a
 * spawner process that forks them and kills them when the agent dies.
 */
export { createLocalRuntime } from './local-runtime.js';
export type { LocalRuntimeOptions } from './local-runtime.js';
