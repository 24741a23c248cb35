// The suite testing itself: core's in-memory reference runtime must pass it.
import { createMemoryRuntime } from '@overthere/core';
import { describeRuntime, memoryFixtures } from '@overthere/conformance';

describeRuntime({
  name: 'memory',
  createRuntime: () => createMemoryRuntime(),
  fixtures: memoryFixtures,
});
