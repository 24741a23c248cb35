/**
 * The types an app sees when it plugs into the SSH server: who logs in, what a
 * session asked for, and what the session should run or attach to.
 */
import type { CreateTaskOptions, TaskSpec } from '@overthere/core';
import type { SshPublicKey } from './authorized-keys.js';

/** One authentication attempt, handed to the app's `authenticate`. */
export interface SshAuthContext {
  /** The login name the client sent. */
  username: string;
  method: 'password' | 'publickey';
  /** The password, for `password`. Compare it with `secretsEqual` from `@overthere/core`. */
  password?: string;
  /**
   * The presented key, for `publickey`. The server has already checked (or is
   * about to check) that the client holds its private key; the app only
   * decides whether this key may log in as `username`.
   */
  publicKey?: SshPublicKey;
  remoteAddress: string;
  remotePort: number;
}

/** Who logged in, as the app's `authenticate` describes them. */
export interface SshUser {
  /** The login name (usually the username the client sent). */
  name: string;
  /** Anything the app wants to find again in its hooks (a task id, a role). */
  data?: unknown;
}

/** A pseudo-terminal the client asked for (`pty-req`). */
export interface SshPty {
  /** `TERM`, e.g. `xterm-256color`. */
  term: string;
  cols: number;
  rows: number;
}

/** What a session hook gets: the connection and what this session asked for so far. */
export interface SshSessionContext {
  /** Unique per connection. */
  connectionId: string;
  /** The login name the client sent. */
  username: string;
  /** What `authenticate` returned. */
  user: SshUser;
  remoteAddress: string;
  /** Environment variables the client sent that the `allowEnv` list lets through. */
  env: Readonly<Record<string, string>>;
  /** The PTY, when the client asked for one. */
  pty?: SshPty;
}

/** What happens to the task when the client goes away before it ends. */
export type SshDisconnectAction = 'stop' | 'keep';

/** Run a new task for this session. */
export interface SshSpecTarget {
  spec: TaskSpec;
  /** Passed to `supervisor.create` (a fixed id, a runtime, a sandbox to run in). */
  options?: CreateTaskOptions;
  /** Default `stop`: the task is stopped with `disconnectKill` when the client goes away. */
  onDisconnect?: SshDisconnectAction;
}

/** Attach this session to a task that exists already (e.g. one started over HTTP or NATS). */
export interface SshAttachTarget {
  taskId: string;
  /** Send the output retained so far before following. Default false: only what comes next. */
  replay?: boolean;
  /** Default `keep`: the task outlives the session. */
  onDisconnect?: SshDisconnectAction;
}

/** What a session hook returns. */
export type SshTarget = SshSpecTarget | SshAttachTarget;

/** Maps a session request to a task. Throw an `OverthereError` to refuse (its message goes to the client's stderr). */
export interface SshSessionHooks {
  /** `ssh host CMD`. Default: `sh -c CMD` as a new task (the built-in `attach <taskId>` first, unless disabled). */
  exec?: (session: SshSessionContext, command: string) => SshTarget | Promise<SshTarget>;
  /** `ssh host`. Default: a login shell as a new task, in a PTY when the client asked for one. */
  shell?: (session: SshSessionContext) => SshTarget | Promise<SshTarget>;
}
