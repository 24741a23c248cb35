/**
 * @overthere/transport-nats: serve an overthere Supervisor over NATS (a micro
 * service with per-task output subjects and capacity adverts), and a client
 * that places tasks on the agent with room.
 */
export { createNatsAgent, SERVICE_NAME, SERVICE_VERSION } from './nats-agent.js';
export type { NatsAgent, NatsAgentOptions } from './nats-agent.js';
export { createNatsClient } from './nats-client.js';
export type {
  NatsAttachment,
  NatsClient,
  NatsClientOptions,
  NatsCreateOptions,
  NatsOutputEvent,
  NatsOutputOptions,
  NatsRuntimeInfo,
} from './nats-client.js';
export { openNatsConnection } from './nats-connection.js';
export type { NatsConnectOptions } from './nats-connection.js';
export { defaultBucketName, openCapacityBoard } from './capacity-board.js';
export type { BoardEntry, CapacityBoard } from './capacity-board.js';
export { AGENT_OPERATIONS, DEFAULT_SUBJECT_PREFIX, createSubjects, taskToken } from './subjects.js';
export type { AgentOperation, Subjects } from './subjects.js';
export { parseAdvert } from './wire.js';
export type { AgentAdvert } from './wire.js';
