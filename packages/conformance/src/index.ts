/**
 * @overthere/conformance: vitest suites that prove a runtime keeps the
 * overthere contract. See the README for how to run them.
 */
export { describeRuntime } from './describe-runtime.js';
export type { BaseTaskSpec, DescribeRuntimeOptions } from './describe-runtime.js';
export { describeTransport } from './describe-transport.js';
export type { DescribeTransportOptions } from './describe-transport.js';
export type {
  TransportClient,
  TransportHarness,
  TransportOutputEvent,
  TransportOutputOptions,
  TransportStartContext,
} from './transport-client.js';
export { memoryFixtures, shellFixtures } from './fixtures.js';
export type { FixtureSpec, FixtureStream, RuntimeFixtures } from './fixtures.js';
