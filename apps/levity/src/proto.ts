/**
 * The levity protocol, loaded from `proto/levity.proto` (shipped beside
 * `src/` and `dist/`, so the same relative path works from sources and from
 * the build), and the shapes of its messages as @grpc/proto-loader gives
 * them: field names as in the .proto (`keepCase`), enums as their names,
 * bytes as Buffers, and an optional field absent unless it was sent.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** Absolute path of the .proto file. */
export const PROTO_PATH = fileURLToPath(new URL('../proto/levity.proto', import.meta.url));

/** `TaskStatusCode`, by name. */
export const TASK_STATUS_CODES = [
  'NotStarted',
  'Running',
  'Signalled',
  'Finished',
  'BrutallyKilled',
  'InternalServerError',
] as const;
export type TaskStatusCode = (typeof TASK_STATUS_CODES)[number];

export interface TaskHandle {
  id?: string;
}

export interface StartTaskRequest {
  binary?: string;
  args?: string[];
  working_dir?: string;
  environment?: Record<string, string>;
}

export interface StartTaskResponse {
  task_id?: TaskHandle;
}

/** QueryTaskRequest, SignalTaskRequest and FetchLogsRequest all carry just the handle. */
export interface TaskRequest {
  task_id?: TaskHandle;
}

export interface QueryTaskResponse {
  status_code?: TaskStatusCode;
  exit_code?: number;
}

export interface FetchLogsResponse {
  stdout?: Buffer;
  stderr?: Buffer;
}

/** One write of the task (FollowLogs): one of the two is non-empty. */
export interface LogChunk {
  stdout?: Buffer;
  stderr?: Buffer;
}

/** How the messages are turned into objects, on both ends. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: false,
  oneofs: false,
};

export interface LevityProto {
  /** The `levity.TaskManager` service, for `server.addService`. */
  service: grpc.ServiceDefinition;
  /** A client class for the service. */
  Client: grpc.ServiceClientConstructor;
}

let loaded: LevityProto | undefined;

/** Load (once) the service definition and client class. */
export function loadLevityProto(): LevityProto {
  if (loaded) return loaded;
  const definition = protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS);
  const Client = grpc.loadPackageDefinition(definition).levity as grpc.GrpcObject;
  const TaskManager = Client.TaskManager as grpc.ServiceClientConstructor;
  loaded = { service: TaskManager.service, Client: TaskManager };
  return loaded;
}
