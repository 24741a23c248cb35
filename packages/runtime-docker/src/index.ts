/**
 * @overthere/runtime-docker — runs overthere tasks in Docker containers: one
 * container per task, sandboxes (a long-lived container plus exec), memory,
 * CPU, pids and disk limits, and re-adoption after an agent restart.
 */
export { createDockerRuntime } from './docker-runtime.js';
export type { DockerRuntime, DockerRuntimeOptions, ImagePullEvent } from './docker-runtime.js';
export type { DockerSpecOptions, PullPolicy } from './spec-options.js';
export { AGENT_LABEL, KIND_LABEL, MANAGED_BY_LABEL, TASK_LABEL, USER_LABEL } from './labels.js';
