/**
 * A promise-based client for the levity protocol (what the `levity` CLI
 * uses). Works against our levityd and the original alike; `followLogs`
 * needs ours.
 */
import * as grpc from '@grpc/grpc-js';
import { splitHostPort } from './address.js';
import {
  loadLevityProto,
  type FetchLogsResponse,
  type LogChunk,
  type QueryTaskResponse,
  type StartTaskRequest,
  type StartTaskResponse,
  type TaskRequest,
} from './proto.js';

/** TLS material for the client. Without it the connection is plaintext. */
export interface LevityClientTls {
  /** CA certificates to check the server against (PEM). Default: the system's roots. */
  ca?: Buffer;
  /** Client certificate chain and key (PEM), for mutual TLS. */
  cert?: Buffer;
  key?: Buffer;
}

/** Options for {@link createLevityClient}. */
export interface LevityClientOptions {
  /** `host:port` (`:port` means this machine). */
  address: string;
  /** Deadline of each unary call, connecting included. */
  timeoutMs: number;
  /** Sent as `authorization: Bearer <token>`. */
  token?: string | undefined;
  tls?: LevityClientTls | undefined;
}

/** The task's state as QueryTask reports it. */
export interface TaskStatus {
  state: NonNullable<QueryTaskResponse['status_code']>;
  /** Set when the state is Finished. */
  exitCode: number | undefined;
}

export interface LevityClient {
  start(request: StartTaskRequest): Promise<string>;
  query(id: string): Promise<TaskStatus>;
  signal(id: string): Promise<void>;
  fetchLogs(id: string): Promise<{ stdout: Buffer; stderr: Buffer }>;
  /**
   * The task's output from the start, then live until it ends. Connecting
   * is bounded by `timeoutMs`; the stream itself is not.
   */
  followLogs(id: string): AsyncIterable<{ stream: 'stdout' | 'stderr'; data: Buffer }>;
  close(): void;
}

type UnaryMethod<Request, Response> = (
  request: Request,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response?: Response) => void,
) => grpc.ClientUnaryCall;

interface TaskManagerClient extends grpc.Client {
  StartTask: UnaryMethod<StartTaskRequest, StartTaskResponse>;
  QueryTask: UnaryMethod<TaskRequest, QueryTaskResponse>;
  SignalTask: UnaryMethod<TaskRequest, Record<string, never>>;
  FetchLogs: UnaryMethod<TaskRequest, FetchLogsResponse>;
  FollowLogs(
    request: TaskRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
  ): grpc.ClientReadableStream<LogChunk>;
}

/** The gRPC target for a Go-style address: `:port` dials this machine, as Go's net.Dial does. */
export function dialTarget(address: string): string {
  try {
    const { host, port } = splitHostPort(address);
    if (host === '') return `localhost:${port}`;
  } catch {
    // Not host:port (dns:///…, unix:…): grpc-js reads it as it is.
  }
  return address;
}

/** Connect (lazily: the first call connects). */
export function createLevityClient(options: LevityClientOptions): LevityClient {
  const { Client } = loadLevityProto();
  const credentials = options.tls
    ? grpc.credentials.createSsl(
        options.tls.ca ?? null,
        options.tls.key ?? null,
        options.tls.cert ?? null,
      )
    : grpc.credentials.createInsecure();
  const client = new Client(dialTarget(options.address), credentials, {
    // FetchLogs of a task with a lot of output.
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
  }) as unknown as TaskManagerClient;

  function metadata(): grpc.Metadata {
    const result = new grpc.Metadata();
    if (options.token !== undefined) result.set('authorization', `Bearer ${options.token}`);
    return result;
  }

  function call<Request, Response>(
    method: UnaryMethod<Request, Response>,
    request: Request,
  ): Promise<Response> {
    return new Promise((resolve, reject) => {
      method.call(
        client,
        request,
        metadata(),
        { deadline: Date.now() + options.timeoutMs },
        (error, response) => (error ? reject(error) : resolve(response as Response)),
      );
    });
  }

  const handle = (id: string): TaskRequest => ({ task_id: { id } });

  return {
    async start(request) {
      const response = await call(client.StartTask, request);
      const id = response.task_id?.id;
      if (id === undefined || id === '') throw new Error('the server answered without a task id');
      return id;
    },
    async query(id) {
      const response = await call(client.QueryTask, handle(id));
      const state = response.status_code ?? 'NotStarted';
      return { state, exitCode: state === 'Finished' ? (response.exit_code ?? -1) : undefined };
    },
    async signal(id) {
      await call(client.SignalTask, handle(id));
    },
    async fetchLogs(id) {
      const response = await call(client.FetchLogs, handle(id));
      return {
        stdout: response.stdout ?? Buffer.alloc(0),
        stderr: response.stderr ?? Buffer.alloc(0),
      };
    },
    async *followLogs(id) {
      await new Promise<void>((resolve, reject) => {
        client.waitForReady(Date.now() + options.timeoutMs, (error) =>
          error ? reject(error) : resolve(),
        );
      });
      const stream = client.FollowLogs(handle(id), metadata(), {});
      try {
        for await (const chunk of stream as AsyncIterable<LogChunk>) {
          if (chunk.stdout !== undefined && chunk.stdout.length > 0) {
            yield { stream: 'stdout', data: chunk.stdout };
          }
          if (chunk.stderr !== undefined && chunk.stderr.length > 0) {
            yield { stream: 'stderr', data: chunk.stderr };
          }
        }
      } finally {
        stream.cancel();
      }
    },
    close() {
      client.close();
    },
  };
}
