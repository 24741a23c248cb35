// The published contract: the local runtime must pass the conformance suite.
import { describeRuntime } from '@overthere/conformance';
import { createLocalRuntime } from '@overthere/runtime-local';

describeRuntime({ name: 'local', createRuntime: () => createLocalRuntime() });

// Without the native addon (or with `nativeSpawn: false`) the Node spawner starts every task.
describeRuntime({
  name: 'local (Node spawner)',
  createRuntime: () => createLocalRuntime({ nativeSpawn: false }),
});
