// The published contract: the local runtime must pass the conformance suite.
import { describeRuntime } from '@overthere/conformance';
import { createLocalRuntime } from '@overthere/runtime-local';

describeRuntime({ name: 'local', createRuntime: () => createLocalRuntime() });
