/**
 * An SSH server (ssh2) in front of a Supervisor: `exec` runs a command as a
 * task, `shell` opens a login shell (in a PTY when asked), and a session can
 * attach to any existing task. Authentication and the mapping of a session to
 * a task are the app's, through `authenticate` and the session hooks.
 */
import { randomUUID } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import ssh2, {
  type Algorithms,
  type AuthContext,
  type Connection,
  type ServerChannel,
  type Session,
} from 'ssh2';
import {
  OverthereError,
  isLoopbackHost,
  noopLogger,
  type KillPolicy,
  type Logger,
  type Supervisor,
  type TaskSpec,
} from '@overthere/core';
import { publicKeyFromBlob, type SshPublicKey } from './authorized-keys.js';
import { HOST_KEY_FILE, loadOrCreateHostKey, type SshHostKey } from './host-key.js';
import { bindSession, failChannel, type BoundSession } from './session-channel.js';
import type {
  SshAuthContext,
  SshPty,
  SshSessionContext,
  SshSessionHooks,
  SshTarget,
  SshUser,
} from './types.js';

/** Options for {@link createSshServer}. */
export interface SshServerOptions {
  /** The supervisor every session's task runs on. */
  supervisor: Supervisor;
  /** Host key file; generated (ed25519, mode 0600) when missing. One of `hostKeyPath` and `dataDir` is required. */
  hostKeyPath?: string;
  /** Directory for the host key (`ssh_host_ed25519_key`) when `hostKeyPath` is not given. */
  dataDir?: string;
  /**
   * Decide who may log in. Return the user to accept, undefined to refuse.
   * Without it the server accepts every login and refuses to listen beyond loopback.
   */
  authenticate?: (context: SshAuthContext) => SshUser | undefined | Promise<SshUser | undefined>;
  /** Map `exec` and `shell` requests to tasks. */
  hooks?: SshSessionHooks;
  /** Shell for the default `exec` (`SHELL -c CMD`) and `shell` (`SHELL -l`). Default `/bin/sh`. */
  shell?: string;
  /**
   * Exec command that attaches to a task by id (`ssh host attach TASK`), with
   * the retained output replayed. `false` turns it off. Default `attach`.
   * Only used when there is no `exec` hook.
   */
  attachCommand?: string | false;
  /** Environment variables clients may set (`env` requests); a trailing `*` matches a prefix. Default `LANG`, `LC_*`. */
  allowEnv?: readonly string[];
  /** How a task is stopped when its client goes away and the target says `stop`. Default SIGHUP, 2 s grace. */
  disconnectKill?: KillPolicy;
  /** SSH keepalive interval. Default 15 000; 0 turns keepalives off. */
  keepaliveIntervalMs?: number;
  /** Unanswered keepalives before the connection is dropped. Default 3. */
  keepaliveCountMax?: number;
  /** Connections beyond this are closed at once. Default 256. */
  maxConnections?: number;
  /** Sessions (channels) open at once per connection. Default 10. */
  maxSessionsPerConnection?: number;
  /** Failed authentication attempts before the connection is dropped. Default 6. */
  maxAuthAttempts?: number;
  /** A connection not authenticated this long after it opened is dropped. Default 30 000. */
  authTimeoutMs?: number;
  /** A connection with no open session for this long is dropped. Default: never. */
  idleTimeoutMs?: number;
  /** Transport algorithm overrides, passed to ssh2. */
  algorithms?: Algorithms;
  /** Software name in the server's version banner. Default `overthere`. */
  ident?: string;
  logger?: Logger;
}

/** Where to listen. */
export interface SshListenOptions {
  /** Default `127.0.0.1`. Beyond loopback only with an `authenticate` hook. */
  host?: string;
  /** Default 0 (any free port). */
  port?: number;
}

/** Which connections {@link SshServer.disconnect} drops. */
export interface SshDisconnectFilter {
  /** Connections logged in with this username. */
  username?: string;
  /** Connections with a session on this task. */
  taskId?: string;
}

/** A connection as {@link SshServer.connections} lists it. */
export interface SshConnectionInfo {
  id: string;
  username: string | undefined;
  remoteAddress: string;
  remotePort: number;
  /** Ids of the tasks its sessions run or are attached to. */
  taskIds: string[];
}

/** A running SSH server. */
export interface SshServer {
  /** The host key's `SHA256:` fingerprint. */
  readonly hostKeyFingerprint: string;
  /** The host key's public line (`ssh-ed25519 AAAA…`) for a `known_hosts` file. */
  readonly hostPublicKey: string;
  /** Start listening; resolves with the bound address. */
  listen(options?: SshListenOptions): Promise<{ host: string; port: number }>;
  /** Open connections. */
  connections(): SshConnectionInfo[];
  /** Drop every connection matching the filter (both fields: both must match); resolves with how many. */
  disconnect(filter: SshDisconnectFilter): number;
  /** Stop listening and drop every connection. Tasks are left to their `onDisconnect`. */
  close(): Promise<void>;
}

/**
 * Ciphers done by Node's OpenSSL. ssh2's chacha20-poly1305 needs its optional
 * native binding (not built here) and is many times slower without it, yet
 * the OpenSSH client asks for it first.
 */
const DEFAULT_CIPHERS: Algorithms['cipher'] = [
  'aes128-gcm@openssh.com',
  'aes256-gcm@openssh.com',
  'aes128-ctr',
  'aes192-ctr',
  'aes256-ctr',
];

const DEFAULT_ALLOW_ENV = ['LANG', 'LC_*'];
const DEFAULT_DISCONNECT_KILL: KillPolicy = { signal: 'SIGHUP', graceMs: 2_000 };

interface ConnectionState {
  info: Omit<SshConnectionInfo, 'taskIds'>;
  client: Connection;
  socket: net.Socket | undefined;
  user: SshUser | undefined;
  sessions: Set<SessionState>;
  idleTimer: NodeJS.Timeout | undefined;
}

interface SessionState {
  /** Set once `shell` or `exec` was accepted. */
  channel: ServerChannel | undefined;
  env: Record<string, string>;
  pty: SshPty | undefined;
  bound: BoundSession | undefined;
  /** Requests that arrived before the task was bound (window changes, signals). */
  pendingSize: { cols: number; rows: number } | undefined;
}

function envAllowed(name: string, allow: readonly string[]): boolean {
  return allow.some((pattern) =>
    pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern,
  );
}

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 0) {
    throw new OverthereError('INVALID_ARGUMENT', `${name} must be a non-negative integer`);
  }
  return value;
}

/**
 * Create an SSH server for `options.supervisor`. Loads (or generates) the
 * host key first, so the fingerprint is known before `listen`.
 *
 * @throws OverthereError `INVALID_ARGUMENT` for bad options; `FAILED_PRECONDITION` for an unusable host key file.
 */
export async function createSshServer(options: SshServerOptions): Promise<SshServer> {
  const { supervisor } = options;
  const logger = options.logger ?? noopLogger;
  const hostKeyPath =
    options.hostKeyPath ??
    (options.dataDir === undefined ? undefined : path.join(options.dataDir, HOST_KEY_FILE));
  if (hostKeyPath === undefined) {
    throw new OverthereError('INVALID_ARGUMENT', 'hostKeyPath or dataDir is required');
  }
  const keepaliveIntervalMs = positiveInteger(
    'keepaliveIntervalMs',
    options.keepaliveIntervalMs,
    15_000,
  );
  const keepaliveCountMax = positiveInteger('keepaliveCountMax', options.keepaliveCountMax, 3);
  const maxConnections = positiveInteger('maxConnections', options.maxConnections, 256);
  const maxSessions = positiveInteger(
    'maxSessionsPerConnection',
    options.maxSessionsPerConnection,
    10,
  );
  const maxAuthAttempts = positiveInteger('maxAuthAttempts', options.maxAuthAttempts, 6);
  const authTimeoutMs = positiveInteger('authTimeoutMs', options.authTimeoutMs, 30_000);
  const idleTimeoutMs =
    options.idleTimeoutMs === undefined
      ? undefined
      : positiveInteger('idleTimeoutMs', options.idleTimeoutMs, 0);
  const shell = options.shell ?? '/bin/sh';
  const attachCommand = options.attachCommand ?? 'attach';
  const allowEnv = options.allowEnv ?? DEFAULT_ALLOW_ENV;
  const disconnectKill = options.disconnectKill ?? DEFAULT_DISCONNECT_KILL;
  const hostKey: SshHostKey = await loadOrCreateHostKey(hostKeyPath);

  const connections = new Map<string, ConnectionState>();
  /** Sockets by `address:port`, from accept until close; ssh2 reports the same pair. */
  const sockets = new Map<string, { socket: net.Socket; authTimer: NodeJS.Timeout | undefined }>();
  let closed = false;

  const server = new ssh2.Server(
    {
      hostKeys: [hostKey.privateKey],
      ident: options.ident ?? 'overthere',
      algorithms: { cipher: DEFAULT_CIPHERS, ...options.algorithms } as Algorithms,
      keepaliveInterval: keepaliveIntervalMs,
      keepaliveCountMax,
    },
    (client, info) => onConnection(client, info.ip, info.port),
  );
  server.on('error', (error: Error) => logger.error({ err: error }, 'ssh server error'));

  // Sockets are accepted here and handed to ssh2, so the connection limit and
  // the authentication deadline also cover clients that never finish a handshake.
  const tcp = net.createServer((socket) => {
    if (closed || sockets.size >= maxConnections) {
      logger.info({ remoteAddress: socket.remoteAddress }, 'ssh connection refused: too many');
      socket.destroy();
      return;
    }
    const key = `${socket.remoteAddress}:${socket.remotePort}`;
    const authTimer =
      authTimeoutMs > 0
        ? setTimeout(() => {
            logger.info({ remoteAddress: socket.remoteAddress }, 'ssh authentication timed out');
            socket.destroy();
          }, authTimeoutMs)
        : undefined;
    authTimer?.unref();
    sockets.set(key, { socket, authTimer });
    socket.once('close', () => {
      if (authTimer) clearTimeout(authTimer);
      sockets.delete(key);
    });
    socket.on('error', () => {});
    server.injectSocket(socket);
  });

  function onConnection(client: Connection, remoteAddress: string, remotePort: number): void {
    const accepted = sockets.get(`${remoteAddress}:${remotePort}`);
    const state: ConnectionState = {
      info: { id: randomUUID(), username: undefined, remoteAddress, remotePort },
      client,
      socket: accepted?.socket,
      user: undefined,
      sessions: new Set(),
      idleTimer: undefined,
    };
    if (closed) {
      client.end();
      return;
    }
    connections.set(state.info.id, state);
    const log = logger.child({ connectionId: state.info.id, remoteAddress });
    let failures = 0;

    client.on('error', (error: Error) => log.debug({ err: error }, 'ssh connection error'));
    client.on('close', () => {
      if (state.idleTimer) clearTimeout(state.idleTimer);
      connections.delete(state.info.id);
    });
    client.on('authentication', (context) => {
      const methods: ('password' | 'publickey')[] = ['password', 'publickey'];
      const refuse = (): void => {
        failures += 1;
        // Cut off before answering the last failure, so no further guess is read.
        if (failures >= maxAuthAttempts) {
          log.info({ username: context.username }, 'ssh authentication: too many failures');
          client.end();
          return;
        }
        context.reject(methods);
      };
      if (failures >= maxAuthAttempts) return;
      authenticate(context, state).then(
        (outcome) => {
          if (outcome === 'refused') refuse();
          else if (outcome === 'methods') context.reject(methods);
        },
        (error: unknown) => {
          log.error({ err: error }, 'ssh authenticate hook failed');
          refuse();
        },
      );
    });
    client.on('ready', () => {
      if (accepted?.authTimer) clearTimeout(accepted.authTimer);
      log.debug({ username: state.info.username }, 'ssh login');
      armIdle(state);
    });
    client.on('session', (accept, reject) => {
      if (liveSessions(state) >= maxSessions) {
        log.info('ssh session refused: too many sessions on this connection');
        reject();
        return;
      }
      onSession(accept(), state, log);
    });
    // Port forwarding, X11 and the like are not offered.
    client.on('tcpip', (_accept, reject) => reject());
    client.on('openssh.streamlocal', (_accept, reject) => reject());
    client.on('request', (accept, reject) => reject?.());
  }

  /**
   * Sessions not closed yet. ssh2 marks a channel closed as soon as the
   * client's CHANNEL_CLOSE is read, before the stream's `close` event, so a
   * client that waits for a close and opens the next session is not refused.
   */
  function liveSessions(state: ConnectionState): number {
    let count = 0;
    for (const session of state.sessions) {
      const incoming = session.channel?.incoming as { state?: string } | undefined;
      if (incoming?.state !== 'closed') count += 1;
    }
    return count;
  }

  function armIdle(state: ConnectionState): void {
    if (idleTimeoutMs === undefined || idleTimeoutMs === 0) return;
    if (state.idleTimer) clearTimeout(state.idleTimer);
    state.idleTimer = undefined;
    if (liveSessions(state) > 0) return;
    state.idleTimer = setTimeout(() => state.client.end(), idleTimeoutMs);
    state.idleTimer.unref();
  }

  /**
   * Decide one attempt. `accepted` and `key-ok` have been answered already;
   * `refused` counts as a failure; `methods` (the `none` probe, other methods)
   * only tells the client what to try.
   */
  async function authenticate(
    context: AuthContext,
    state: ConnectionState,
  ): Promise<'accepted' | 'key-ok' | 'refused' | 'methods'> {
    const base = {
      username: context.username,
      remoteAddress: state.info.remoteAddress,
      remotePort: state.info.remotePort,
    };
    const accept = (user: SshUser): 'accepted' => {
      state.user = user;
      state.info.username = context.username;
      context.accept();
      return 'accepted';
    };
    if (options.authenticate === undefined) {
      // Loopback only (listen enforces it): anyone on this machine may log in.
      return accept({ name: context.username });
    }
    if (context.method === 'password') {
      const user = await options.authenticate({
        ...base,
        method: 'password',
        password: context.password,
      });
      return user ? accept(user) : 'refused';
    }
    if (context.method !== 'publickey') return 'methods';
    let publicKey: SshPublicKey;
    try {
      publicKey = publicKeyFromBlob(context.key.data);
    } catch {
      return 'refused';
    }
    const user = await options.authenticate({ ...base, method: 'publickey', publicKey });
    if (!user) return 'refused';
    // Without a signature the client only asks whether the key would do.
    if (context.signature === undefined || context.blob === undefined) {
      context.accept();
      return 'key-ok';
    }
    const parsed = ssh2.utils.parseKey(context.key.data);
    const verified =
      !(parsed instanceof Error) &&
      parsed.verify(context.blob, context.signature, context.hashAlgo) === true;
    return verified ? accept(user) : 'refused';
  }

  function onSession(session: Session, connection: ConnectionState, log: Logger): void {
    const state: SessionState = {
      channel: undefined,
      env: {},
      pty: undefined,
      bound: undefined,
      pendingSize: undefined,
    };
    // Counted from now: a session that asks for nothing still holds a slot.
    connection.sessions.add(state);
    const user = connection.user ?? { name: connection.info.username ?? '' };
    const context = (): SshSessionContext => ({
      connectionId: connection.info.id,
      username: connection.info.username ?? '',
      user,
      remoteAddress: connection.info.remoteAddress,
      env: { ...state.env },
      ...(state.pty === undefined ? {} : { pty: { ...state.pty } }),
    });

    session.on('pty', (accept, reject, info) => {
      if (state.bound || !Number.isInteger(info.cols) || !Number.isInteger(info.rows)) {
        reject?.();
        return;
      }
      state.pty = {
        term: info.term || 'vt100',
        cols: Math.max(1, info.cols || 80),
        rows: Math.max(1, info.rows || 24),
      };
      accept?.();
    });
    session.on('window-change', (accept, _reject, info) => {
      const size = { cols: Math.max(1, info.cols), rows: Math.max(1, info.rows) };
      if (state.pty) state.pty = { ...state.pty, ...size };
      if (state.bound) state.bound.resize(size);
      else state.pendingSize = size;
      accept?.();
    });
    session.on('env', (accept, reject, info) => {
      if (state.bound || !envAllowed(info.key, allowEnv) || info.key.includes('=')) {
        reject?.();
        return;
      }
      state.env[info.key] = info.val;
      accept?.();
    });
    session.on('signal', (accept, reject, info) => {
      if (!state.bound) {
        reject?.();
        return;
      }
      state.bound.signal(info.name);
      accept?.();
    });
    session.on('shell', (accept) => {
      const channel = accept();
      const hook = options.hooks?.shell;
      start(channel, hook ? () => hook(context()) : () => defaultShell(context()));
    });
    session.on('exec', (accept, _reject, info) => {
      const channel = accept();
      const hook = options.hooks?.exec;
      start(
        channel,
        hook ? () => hook(context(), info.command) : () => defaultExec(context(), info.command),
      );
    });
    session.on('subsystem', (_accept, reject) => reject());
    session.on('sftp', (_accept, reject) => reject());
    session.on('x11', (_accept, reject) => reject?.());
    session.on('auth-agent', (_accept, reject) => reject?.());

    function start(channel: ServerChannel, resolveTarget: () => SshTarget | Promise<SshTarget>) {
      state.channel = channel;
      armIdle(connection);
      channel.once('close', () => {
        connection.sessions.delete(state);
        armIdle(connection);
      });
      void bind(channel, resolveTarget).catch((error: unknown) => {
        if (!OverthereError.is(error)) log.error({ err: error }, 'ssh session could not start');
        failChannel(channel, error);
      });
    }

    async function bind(
      channel: ServerChannel,
      resolveTarget: () => SshTarget | Promise<SshTarget>,
    ): Promise<void> {
      const target = await resolveTarget();
      let taskId: string;
      let fromSeq: number | undefined;
      if ('taskId' in target) {
        const task = supervisor.get(target.taskId);
        taskId = task.id;
        fromSeq = target.replay === true ? undefined : supervisor.output(taskId).nextSeq;
        const size = state.pendingSize ?? state.pty;
        if (size && task.spec.tty) {
          await supervisor.resize(taskId, { cols: size.cols, rows: size.rows }).catch(() => {});
        }
      } else {
        const task = await supervisor.create(target.spec, target.options);
        taskId = task.id;
        fromSeq = undefined;
      }
      const onDisconnect = target.onDisconnect ?? ('taskId' in target ? 'keep' : 'stop');
      if (channel.destroyed) {
        // The client left while the task was being started.
        if (onDisconnect === 'stop') await supervisor.stop(taskId, disconnectKill).catch(() => {});
        return;
      }
      state.bound = bindSession({
        supervisor,
        channel,
        taskId,
        fromSeq,
        onDisconnect,
        disconnectKill,
        logger: log,
      });
      if (state.pendingSize && !('taskId' in target)) state.bound.resize(state.pendingSize);
      log.debug({ taskId, subtype: channel.subtype }, 'ssh session bound');
    }
  }

  function baseSpec(session: SshSessionContext): TaskSpec {
    const env: Record<string, string> = { ...session.env };
    if (session.pty) env.TERM = session.pty.term;
    return {
      env,
      stdin: 'pipe',
      ...(session.pty ? { tty: { cols: session.pty.cols, rows: session.pty.rows } } : {}),
      labels: { 'overthere.ssh.user': session.username },
    };
  }

  function defaultShell(session: SshSessionContext): SshTarget {
    return { spec: { ...baseSpec(session), command: [shell, '-l'] } };
  }

  function defaultExec(session: SshSessionContext, command: string): SshTarget {
    if (attachCommand !== false) {
      const words = command.trim().split(/\s+/);
      if (words[0] === attachCommand) {
        const taskId = words[1];
        if (words.length !== 2 || taskId === undefined) {
          throw new OverthereError('INVALID_ARGUMENT', `usage: ${attachCommand} TASK_ID`);
        }
        return { taskId, replay: true };
      }
    }
    return { spec: { ...baseSpec(session), command: [shell, '-c', command] } };
  }

  function listConnections(): SshConnectionInfo[] {
    return [...connections.values()].map((state) => ({
      ...state.info,
      taskIds: [...state.sessions]
        .map((session) => session.bound?.taskId)
        .filter((id): id is string => id !== undefined),
    }));
  }

  return {
    hostKeyFingerprint: hostKey.fingerprint,
    hostPublicKey: hostKey.publicKey,
    async listen(listenOptions = {}) {
      const host = listenOptions.host ?? '127.0.0.1';
      const port = listenOptions.port ?? 0;
      if (options.authenticate === undefined && !isLoopbackHost(host)) {
        throw new OverthereError(
          'FAILED_PRECONDITION',
          `refusing to listen on ${host} without an authenticate hook (loopback only)`,
        );
      }
      if (closed) throw new OverthereError('FAILED_PRECONDITION', 'the ssh server is closed');
      await new Promise<void>((resolve, reject) => {
        const onError = (error: Error): void => reject(error);
        tcp.once('error', onError);
        tcp.listen(port, host, () => {
          tcp.off('error', onError);
          resolve();
        });
      });
      const address = tcp.address() as AddressInfo;
      logger.info({ host: address.address, port: address.port }, 'ssh server listening');
      return { host: address.address, port: address.port };
    },
    connections: listConnections,
    disconnect(filter) {
      let count = 0;
      for (const state of connections.values()) {
        if (filter.username === undefined && filter.taskId === undefined) continue;
        if (filter.username !== undefined && state.info.username !== filter.username) continue;
        if (
          filter.taskId !== undefined &&
          ![...state.sessions].some((session) => session.bound?.taskId === filter.taskId)
        ) {
          continue;
        }
        state.client.end();
        count += 1;
      }
      return count;
    },
    async close() {
      if (closed) return;
      closed = true;
      const closing = new Promise<void>((resolve) => {
        if (!tcp.listening) resolve();
        else tcp.close(() => resolve());
      });
      // Logged-in clients get a polite disconnect; sockets still in the
      // handshake are cut at once, and whatever is open after a moment too.
      const polite = new Set<net.Socket>();
      for (const state of connections.values()) {
        if (state.socket) polite.add(state.socket);
        state.client.end();
      }
      for (const { socket } of sockets.values()) {
        if (!polite.has(socket)) socket.destroy();
      }
      const cut = setTimeout(() => {
        for (const { socket } of sockets.values()) socket.destroy();
      }, 1_000);
      await closing;
      clearTimeout(cut);
    },
  };
}
