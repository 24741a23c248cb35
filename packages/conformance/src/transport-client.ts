/**
 * What `describeTransport` needs from a transport: a client that speaks the
 * overthere protocol, mirroring the `Supervisor`. A transport's own client
 * implements it (structurally: there is nothing to import at run time).
 */
import type {
  CreateTaskOptions,
  KillPolicy,
  OutputStream,
  Runtime,
  Supervisor,
  SupervisorCapacity,
  TaskFilter,
  TaskInfo,
  TaskSpec,
  TtySize,
} from '@overthere/core';

/** An output event as a transport client delivers it. */
export type TransportOutputEvent =
  | {
      type: 'frame';
      /** Position in the task's log across both streams. */
      seq: number;
      /** Byte offset of `data` within its stream. */
      offset: number;
      stream: OutputStream;
      time: number;
      data: Uint8Array;
    }
  | { type: 'gap'; fromSeq: number; toSeq: number }
  /** The last event: the task is final (with `follow`), or the retained output was all sent. */
  | { type: 'end'; task: TaskInfo };

/** Options for {@link TransportClient.output}. */
export interface TransportOutputOptions {
  /** First seq to read. Default: the oldest retained. */
  cursor?: number;
  /** Default both. */
  stream?: OutputStream | 'both';
  /** Keep reading until the task is final. */
  follow?: boolean;
  /** Stop reading: the iteration ends without an error. */
  signal?: AbortSignal;
}

/**
 * A protocol client. Every method rejects with an `OverthereError` carrying the
 * protocol's code (`NOT_FOUND`, `INVALID_ARGUMENT`, `SPAWN_FAILED`,
 * `UNAUTHENTICATED`, …), rebuilt on the client side.
 */
export interface TransportClient {
  create(spec: TaskSpec, options?: CreateTaskOptions): Promise<TaskInfo>;
  get(id: string): Promise<TaskInfo>;
  list(filter?: TaskFilter): Promise<TaskInfo[]>;
  /** Resolves with the task once it is final. */
  wait(id: string): Promise<TaskInfo>;
  signal(id: string, signal: string): Promise<void>;
  /** Stop for good; resolves with the final task. */
  stop(id: string, policy?: KillPolicy): Promise<TaskInfo>;
  remove(id: string): Promise<void>;
  writeStdin(id: string, data: Uint8Array | string): Promise<void>;
  closeStdin(id: string): Promise<void>;
  resize(id: string, size: TtySize): Promise<void>;
  capacity(): Promise<SupervisorCapacity>;
  /**
   * The task's output, ending with `end`. Across a dropped connection the
   * client resumes from the last seq it delivered, so nothing is missed or repeated.
   */
  output(id: string, options?: TransportOutputOptions): AsyncIterable<TransportOutputEvent>;
}

/** What `start` gets: the supervisor to serve and the runtime it runs on. */
export interface TransportStartContext {
  supervisor: Supervisor;
  runtime: Runtime;
}

/** A transport serving a supervisor, with clients for it. */
export interface TransportHarness {
  /** A client with valid credentials. */
  client: TransportClient;
  /**
   * A client with a wrong credential, where the transport has auth: every
   * call must fail with `UNAUTHENTICATED` and change nothing.
   */
  unauthenticatedClient?: TransportClient;
  /**
   * Drop every open connection from the server side (as a network failure
   * would), so the suite can check the client resumes its output streams.
   */
  dropConnections?: () => void | Promise<void>;
  /**
   * A `Runtime` whose processes are tasks on this transport's agent (e.g.
   * `createRemoteRuntime({ client })`). With it, `describeRuntime` runs again
   * through the transport.
   */
  remoteRuntime?: () => Runtime | Promise<Runtime>;
  /** Stop serving (the suite closes the supervisor and runtime itself). */
  close(): Promise<void>;
}
