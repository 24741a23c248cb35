/**
 * Settings of `narc`: command-line flags over environment variables over a
 * JSON config file over defaults. Every setting has all three spellings
 * (`--ssh-port`, `NARC_SSH_PORT`, `"sshPort"`).
 */
import os from 'node:os';
import path from 'node:path';

/** Default SSH port (the original's consoles were on an unprivileged port too). */
export const DEFAULT_SSH_PORT = 2222;
export const DEFAULT_ADVERTISE_INTERVAL_MS = 10_000;
export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Everything one run of the agent is started with. */
export interface NarcSettings {
  /** NATS server URLs. */
  natsServers: string[];
  natsUser: string | undefined;
  natsPassword: string | undefined;
  natsToken: string | undefined;
  /** A `.creds` file for JWT auth. */
  natsCredentials: string | undefined;
  /** PEM CA file to verify the NATS server with (turns TLS on). */
  natsCa: string | undefined;
  sshHost: string;
  sshPort: number;
  dataDir: string;
  /** Undefined: kept in `<dataDir>/agent-id`, generated once. */
  agentId: string | undefined;
  image: string;
  network: string | undefined;
  shell: string[];
  advertiseIntervalMs: number;
  capacityTtlMs: number | undefined;
  memoryMegabytes: number | undefined;
  diskMegabytes: number | undefined;
  pool: string;
  logLevel: LogLevel;
}

/** What the command line asks for. */
export type CliCommand =
  { kind: 'serve'; settings: NarcSettings } | { kind: 'help' } | { kind: 'version' };

/** A command line, environment or config file that cannot be used (exit 2). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

type Kind = 'string' | 'integer' | 'list' | 'level';

interface Setting {
  flag: string;
  env: string;
  key: string;
  kind: Kind;
  placeholder: string;
  help: string;
}

const SETTINGS: readonly Setting[] = [
  {
    flag: 'config',
    env: 'NARC_CONFIG',
    key: 'config',
    kind: 'string',
    placeholder: 'FILE',
    help: 'JSON config file with any of the settings below (keys as in parentheses)',
  },
  {
    flag: 'nats',
    env: 'NARC_NATS_URL',
    key: 'nats',
    kind: 'list',
    placeholder: 'URL[,URL…]',
    help: `NATS server URLs (nats) (default ${DEFAULT_NATS_URL})`,
  },
  {
    flag: 'nats-user',
    env: 'NARC_NATS_USER',
    key: 'natsUser',
    kind: 'string',
    placeholder: 'USER',
    help: 'NATS user (natsUser)',
  },
  {
    flag: 'nats-password',
    env: 'NARC_NATS_PASSWORD',
    key: 'natsPassword',
    kind: 'string',
    placeholder: 'PASSWORD',
    help: 'NATS password (natsPassword)',
  },
  {
    flag: 'nats-token',
    env: 'NARC_NATS_TOKEN',
    key: 'natsToken',
    kind: 'string',
    placeholder: 'TOKEN',
    help: 'NATS token (natsToken)',
  },
  {
    flag: 'nats-creds',
    env: 'NARC_NATS_CREDS',
    key: 'natsCredentials',
    kind: 'string',
    placeholder: 'FILE',
    help: 'NATS .creds file for JWT auth (natsCredentials)',
  },
  {
    flag: 'nats-ca',
    env: 'NARC_NATS_CA',
    key: 'natsCa',
    kind: 'string',
    placeholder: 'FILE',
    help: 'PEM CA to verify the NATS server with; turns TLS on (natsCa)',
  },
  {
    flag: 'ssh-host',
    env: 'NARC_SSH_HOST',
    key: 'sshHost',
    kind: 'string',
    placeholder: 'HOST',
    help: 'SSH listen address (sshHost) (default 127.0.0.1)',
  },
  {
    flag: 'ssh-port',
    env: 'NARC_SSH_PORT',
    key: 'sshPort',
    kind: 'integer',
    placeholder: 'PORT',
    help: `SSH port; 0 picks a free one (sshPort) (default ${DEFAULT_SSH_PORT})`,
  },
  {
    flag: 'data-dir',
    env: 'NARC_DATA_DIR',
    key: 'dataDir',
    kind: 'string',
    placeholder: 'DIR',
    help: 'host key, agent id and Docker state (dataDir) (default $XDG_STATE_HOME/narc or ~/.local/state/narc)',
  },
  {
    flag: 'agent-id',
    env: 'NARC_AGENT_ID',
    key: 'agentId',
    kind: 'string',
    placeholder: 'ID',
    help: 'id in task.advertise (agentId) (default: generated once, kept in the data dir)',
  },
  {
    flag: 'image',
    env: 'NARC_IMAGE',
    key: 'image',
    kind: 'string',
    placeholder: 'IMAGE',
    help: 'image of every task container (image) (default busybox:latest)',
  },
  {
    flag: 'network',
    env: 'NARC_NETWORK',
    key: 'network',
    kind: 'string',
    placeholder: 'NAME',
    help: 'Docker network for task containers (network) (default: no network)',
  },
  {
    flag: 'shell',
    env: 'NARC_SHELL',
    key: 'shell',
    kind: 'list',
    placeholder: 'PROGRAM[,ARG…]',
    help: 'interactive shell in the container (shell) (default /bin/sh)',
  },
  {
    flag: 'advertise-interval-ms',
    env: 'NARC_ADVERTISE_INTERVAL_MS',
    key: 'advertiseIntervalMs',
    kind: 'integer',
    placeholder: 'MS',
    help: `how often task.advertise is sent (advertiseIntervalMs) (default ${DEFAULT_ADVERTISE_INTERVAL_MS})`,
  },
  {
    flag: 'capacity-ttl-ms',
    env: 'NARC_CAPACITY_TTL_MS',
    key: 'capacityTtlMs',
    kind: 'integer',
    placeholder: 'MS',
    help: 'a silent agent leaves the capacity board after this long (capacityTtlMs) (default 3 adverts)',
  },
  {
    flag: 'memory-mb',
    env: 'NARC_MEMORY_MB',
    key: 'memoryMegabytes',
    kind: 'integer',
    placeholder: 'MB',
    help: 'memory to hand out (memoryMegabytes) (default the Docker host total)',
  },
  {
    flag: 'disk-mb',
    env: 'NARC_DISK_MB',
    key: 'diskMegabytes',
    kind: 'integer',
    placeholder: 'MB',
    help: 'disk to hand out as quotas (diskMegabytes) (default free space under the data dir)',
  },
  {
    flag: 'pool',
    env: 'NARC_POOL',
    key: 'pool',
    kind: 'string',
    placeholder: 'NAME',
    help: 'pool name: JetStream buckets <pool>-tasks and <pool>-capacity (pool) (default narc)',
  },
  {
    flag: 'log-level',
    env: 'NARC_LOG_LEVEL',
    key: 'logLevel',
    kind: 'level',
    placeholder: 'LEVEL',
    help: `${LOG_LEVELS.join(', ')} (logLevel) (default info)`,
  },
];

/** `narc --help`. */
export function usage(): string {
  const lines = [
    'usage: narc [options]',
    '',
    'Throwaway containers over NATS (task.start, task.stop, task.advertise),',
    'consoles over SSH: ssh TASK@host with the secure token as the password.',
    '',
    'options (flag, environment variable):',
  ];
  for (const setting of SETTINGS) {
    lines.push(`  --${setting.flag} ${setting.placeholder}, ${setting.env}`);
    lines.push(`      ${setting.help}`);
  }
  lines.push('  --help       print this and exit', '  --version    print the version and exit');
  return `${lines.join('\n')}\n`;
}

type Raw = Record<string, unknown>;

function convert(setting: Setting, value: unknown, where: string): unknown {
  const bad = (what: string): never => {
    throw new UsageError(`${where}: ${what}`);
  };
  if (setting.kind === 'list') {
    if (Array.isArray(value)) {
      if (value.length === 0 || !value.every((item) => typeof item === 'string' && item !== '')) {
        bad('must be a non-empty list of strings');
      }
      return value as string[];
    }
    if (typeof value !== 'string' || value.trim() === '') bad('must not be empty');
    return (value as string)
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item !== '');
  }
  if (setting.kind === 'integer') {
    const number = typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : value;
    if (typeof number !== 'number' || !Number.isSafeInteger(number) || number < 0) {
      bad('must be a whole number ≥ 0');
    }
    return number;
  }
  if (typeof value !== 'string' || value === '') bad('must be a non-empty string');
  if (setting.kind === 'level' && !(LOG_LEVELS as readonly string[]).includes(value as string)) {
    bad(`must be one of ${LOG_LEVELS.join(', ')}`);
  }
  return value;
}

/** The default data directory: `$XDG_STATE_HOME/narc` or `~/.local/state/narc`. */
export function defaultDataDir(env: NodeJS.ProcessEnv): string {
  const state = env.XDG_STATE_HOME ?? path.join(env.HOME ?? os.homedir(), '.local', 'state');
  return path.join(state, 'narc');
}

/** Parse the command line and environment; `readConfig` reads a config file's text. */
export function parseCommandLine(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  readConfig: (file: string) => string,
): CliCommand {
  const fromFlags: Raw = {};
  for (let index = 0; index < argv.length; index += 1) {
    const argument = argv[index]!;
    if (argument === '--help' || argument === '-h') return { kind: 'help' };
    if (argument === '--version' || argument === '-V') return { kind: 'version' };
    const match = /^--([a-z-]+)(?:=(.*))?$/s.exec(argument);
    const setting = match && SETTINGS.find((candidate) => candidate.flag === match[1]);
    if (!match || !setting) throw new UsageError(`unknown argument ${JSON.stringify(argument)}`);
    let value = match[2];
    if (value === undefined) {
      value = argv[index + 1];
      index += 1;
      if (value === undefined) throw new UsageError(`--${setting.flag} needs a value`);
    }
    fromFlags[setting.key] = convert(setting, value, `--${setting.flag}`);
  }
  const fromEnv: Raw = {};
  for (const setting of SETTINGS) {
    const value = env[setting.env];
    if (value !== undefined && value !== '') {
      fromEnv[setting.key] = convert(setting, value, setting.env);
    }
  }
  const configFile = (fromFlags.config ?? fromEnv.config) as string | undefined;
  const fromFile: Raw = {};
  if (configFile !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readConfig(configFile));
    } catch (error) {
      throw new UsageError(
        `config file ${configFile}: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new UsageError(`config file ${configFile}: must be a JSON object`);
    }
    for (const [key, value] of Object.entries(parsed)) {
      const setting = SETTINGS.find((candidate) => candidate.key === key);
      if (!setting || key === 'config') {
        throw new UsageError(`config file ${configFile}: unknown setting ${JSON.stringify(key)}`);
      }
      fromFile[key] = convert(setting, value, `config file ${configFile}: ${key}`);
    }
  }
  const merged: Raw = { ...fromFile, ...fromEnv, ...fromFlags };
  const get = <T>(key: string): T | undefined => merged[key] as T | undefined;
  const sshPort = get<number>('sshPort') ?? DEFAULT_SSH_PORT;
  if (sshPort > 65_535) throw new UsageError('sshPort must be at most 65535');
  const advertiseIntervalMs = get<number>('advertiseIntervalMs') ?? DEFAULT_ADVERTISE_INTERVAL_MS;
  if (advertiseIntervalMs < 100) throw new UsageError('advertiseIntervalMs must be at least 100');
  const positive = (key: string): number | undefined => {
    const value = get<number>(key);
    if (value === 0) throw new UsageError(`${key} must be at least 1`);
    return value;
  };
  const agentId = get<string>('agentId');
  if (agentId !== undefined && !/^[A-Za-z0-9_-]{1,64}$/.test(agentId)) {
    throw new UsageError('agentId must be 1-64 letters, digits, "_" or "-"');
  }
  const pool = get<string>('pool') ?? 'narc';
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(pool)) {
    throw new UsageError('pool must be 1-64 letters, digits, "_" or "-"');
  }
  return {
    kind: 'serve',
    settings: {
      natsServers: get<string[]>('nats') ?? [DEFAULT_NATS_URL],
      natsUser: get('natsUser'),
      natsPassword: get('natsPassword'),
      natsToken: get('natsToken'),
      natsCredentials: get('natsCredentials'),
      natsCa: get('natsCa'),
      sshHost: get('sshHost') ?? '127.0.0.1',
      sshPort,
      dataDir: path.resolve(get('dataDir') ?? defaultDataDir(env)),
      agentId,
      image: get('image') ?? 'busybox:latest',
      network: get('network'),
      shell: get<string[]>('shell') ?? ['/bin/sh'],
      advertiseIntervalMs,
      capacityTtlMs: positive('capacityTtlMs'),
      memoryMegabytes: positive('memoryMegabytes'),
      diskMegabytes: positive('diskMegabytes'),
      pool,
      logLevel: get('logLevel') ?? 'info',
    },
  };
}
