// The published contract: the Docker runtime must pass the conformance suite against a real dockerd.
import { describeRuntime } from '@overthere/conformance';
import { createDockerRuntime } from '@overthere/runtime-docker';
import { TEST_IMAGE } from './helpers.js';

describeRuntime({
  name: 'docker (busybox)',
  createRuntime: () =>
    createDockerRuntime({
      agentId: `conformance-${process.pid}`,
      defaultImage: TEST_IMAGE,
      // Containers do not inherit the agent's environment: the base variable is the runtime's.
      env: { OVERTHERE_CONFORMANCE_BASE: 'inherited' },
    }),
  timeScale: 3,
});
