/**
 * Command line of `rtot-server`, in the style of Go's `flag` package (which
 * the original used): `-a=:8457`, `-a :8457`, `--a :8457`, `--addr=:8457`;
 * booleans as `-v` or `-v=true`; parsing stops at `--` or the first argument
 * that is not a flag. Environment variables give the defaults.
 */
import os from 'node:os';
import path from 'node:path';
import { parseGoDuration } from './go-format.js';

/** The original's default address: every interface, port 8457. */
export const DEFAULT_ADDRESS = ':8457';
/** Completed jobs are forgotten this long after they ended, by default. */
export const DEFAULT_JOB_TTL_MS = 24 * 60 * 60 * 1000;
/** Between the SIGTERM a job gets when it is deleted (or the server stops) and the SIGKILL. */
export const DEFAULT_KILL_GRACE_MS = 5_000;
/** Largest script a POST may carry. */
export const DEFAULT_BODY_LIMIT_BYTES = 1024 * 1024;

/** Settings for one run of the server, after flags and environment. */
export interface ServerSettings {
  /** The address as given (`:8457`, `127.0.0.1:8457`, `[::1]:0`). */
  address: string;
  /** Host to bind; undefined means every interface (Go's `:port`). */
  host: string | undefined;
  port: number;
  /** Shared secret; undefined means "generate one". */
  secret: string | undefined;
  dataDir: string;
  /** 0 keeps completed jobs until they are deleted. */
  jobTtlMs: number;
  killGraceMs: number;
  bodyLimitBytes: number;
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  logLevel: LogLevel;
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** What the command line asks for. */
export type CliCommand =
  { kind: 'serve'; settings: ServerSettings } | { kind: 'help' } | { kind: 'version' };

/** A command line that cannot be used; Go's flag package exits 2 for these. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

interface FlagSpec {
  names: readonly string[];
  key: string;
  boolean?: boolean;
  env?: string;
  placeholder?: string;
  help: string;
}

const FLAGS: readonly FlagSpec[] = [
  {
    names: ['a', 'addr'],
    key: 'addr',
    env: 'RTOT_ADDR',
    placeholder: 'ADDR',
    help: `HTTP server address, [host]:port; ":port" is every interface (default "${DEFAULT_ADDRESS}")`,
  },
  {
    names: ['s', 'secret'],
    key: 'secret',
    env: 'RTOT_SECRET',
    placeholder: 'SECRET',
    help: 'shared secret clients send in the Rtot-Secret header (default: a random one, printed)',
  },
  {
    names: ['data-dir'],
    key: 'data-dir',
    env: 'RTOT_DATA_DIR',
    placeholder: 'DIR',
    help: 'where jobs, their output and scripts are kept (default $XDG_STATE_HOME/rtot or ~/.local/state/rtot)',
  },
  {
    names: ['job-ttl'],
    key: 'job-ttl',
    env: 'RTOT_JOB_TTL',
    placeholder: 'DURATION',
    help: 'forget completed jobs this long after they complete; 0 keeps them (default 24h)',
  },
  {
    names: ['kill-grace'],
    key: 'kill-grace',
    env: 'RTOT_KILL_GRACE',
    placeholder: 'DURATION',
    help: 'SIGTERM to SIGKILL delay when a running job is deleted or the server stops (default 5s)',
  },
  {
    names: ['body-limit'],
    key: 'body-limit',
    env: 'RTOT_BODY_LIMIT',
    placeholder: 'BYTES',
    help: `largest script a POST may carry, in bytes (default ${DEFAULT_BODY_LIMIT_BYTES})`,
  },
  {
    names: ['tls-cert'],
    key: 'tls-cert',
    env: 'RTOT_TLS_CERT',
    placeholder: 'FILE',
    help: 'PEM certificate (chain): serve HTTPS (needs --tls-key)',
  },
  {
    names: ['tls-key'],
    key: 'tls-key',
    env: 'RTOT_TLS_KEY',
    placeholder: 'FILE',
    help: 'PEM private key for --tls-cert',
  },
  {
    names: ['log-level'],
    key: 'log-level',
    env: 'RTOT_LOG_LEVEL',
    placeholder: 'LEVEL',
    help: `${LOG_LEVELS.join(', ')} (default warn); logs go to stderr as JSON lines`,
  },
  { names: ['h', 'help'], key: 'help', boolean: true, help: 'show this help and exit' },
  { names: ['v', 'version'], key: 'version', boolean: true, help: 'show the version and exit' },
];

const FLAG_BY_NAME = new Map<string, FlagSpec>(
  FLAGS.flatMap((flag) => flag.names.map((name) => [name, flag] as const)),
);

/** The help text (`rtot-server --help`). */
export function usage(): string {
  const lines = [
    'Usage: rtot-server [flags]',
    '',
    'Runs scripts POSTed over HTTP (rtot: Run This Over There). Every route but',
    'GET /ping needs the header "Rtot-Secret: SECRET".',
    '',
    'Flags (one or two dashes; "-a :8457" or "-a=:8457"):',
  ];
  for (const flag of FLAGS) {
    const names = flag.names
      .map((name) => (name.length === 1 ? `-${name}` : `--${name}`))
      .join(', ');
    const head = flag.placeholder === undefined ? names : `${names} ${flag.placeholder}`;
    lines.push(`  ${head}`);
    lines.push(`      ${flag.help}${flag.env === undefined ? '' : ` [${flag.env}]`}`);
  }
  return `${lines.join('\n')}\n`;
}

function parseBoolean(name: string, value: string): boolean {
  if (/^(1|t|true)$/i.test(value)) return true;
  if (/^(0|f|false)$/i.test(value)) return false;
  throw new UsageError(`invalid boolean value ${JSON.stringify(value)} for -${name}`);
}

/** Split an address as Go's net.Listen takes it: `host:port`, `:port`, `[v6]:port`. */
export function parseAddress(address: string): { host: string | undefined; port: number } {
  const match = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(address);
  if (!match) {
    throw new UsageError(`invalid address ${JSON.stringify(address)}: want [host]:port`);
  }
  const port = Number(match[3]);
  if (port > 65_535) throw new UsageError(`invalid port in address ${JSON.stringify(address)}`);
  const host = match[1] ?? match[2] ?? '';
  return { host: host === '' ? undefined : host, port };
}

/** The default data directory: `$XDG_STATE_HOME/rtot`, else `~/.local/state/rtot`. */
export function defaultDataDir(env: NodeJS.ProcessEnv): string {
  const stateHome = env.XDG_STATE_HOME;
  if (stateHome !== undefined && path.isAbsolute(stateHome)) return path.join(stateHome, 'rtot');
  return path.join(env.HOME ?? os.homedir(), '.local', 'state', 'rtot');
}

/** Node timers fire at once for longer delays (about 24.8 days), so durations are capped here. */
export const MAX_DURATION_MS = 2_147_483_647;

function durationSetting(name: string, value: string): number {
  let ms: number;
  try {
    ms = parseGoDuration(value);
  } catch (error) {
    throw new UsageError(`--${name}: ${(error as Error).message}`);
  }
  if (ms > MAX_DURATION_MS) {
    throw new UsageError(`--${name}: ${value} is too long; at most 596h (about 24.8 days)`);
  }
  return Math.round(ms);
}

/**
 * Parse the command line (without `node` and the script) over the environment.
 * Throws {@link UsageError} for an unknown flag, a missing or bad value, or an
 * argument that is not a flag.
 */
export function parseCommandLine(
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): CliCommand {
  const values = new Map<string, string>();
  const booleans = new Set<string>();
  let index = 0;
  while (index < args.length) {
    const arg = args[index] as string;
    if (arg === '--') {
      index += 1;
      break;
    }
    if (!arg.startsWith('-') || arg === '-') break;
    const body = arg.startsWith('--') ? arg.slice(2) : arg.slice(1);
    if (body.startsWith('-') || body.startsWith('='))
      throw new UsageError(`bad flag syntax: ${arg}`);
    const equals = body.indexOf('=');
    const name = equals === -1 ? body : body.slice(0, equals);
    const inline = equals === -1 ? undefined : body.slice(equals + 1);
    const flag = FLAG_BY_NAME.get(name);
    if (!flag) throw new UsageError(`flag provided but not defined: -${name}`);
    index += 1;
    if (flag.boolean) {
      if (inline === undefined || parseBoolean(name, inline)) booleans.add(flag.key);
      else booleans.delete(flag.key);
      continue;
    }
    if (inline !== undefined) {
      values.set(flag.key, inline);
      continue;
    }
    const next = args[index];
    if (next === undefined) throw new UsageError(`flag needs an argument: -${name}`);
    values.set(flag.key, next);
    index += 1;
  }
  if (index < args.length) {
    throw new UsageError(`unexpected argument: ${JSON.stringify(args[index])}`);
  }
  if (booleans.has('help')) return { kind: 'help' };
  if (booleans.has('version')) return { kind: 'version' };

  // A flag wins over its environment variable; an empty value counts as unset.
  const setting = (key: string): string | undefined => {
    const flag = FLAGS.find((candidate) => candidate.key === key) as FlagSpec;
    const value = values.get(key) ?? (flag.env === undefined ? undefined : env[flag.env]);
    return value === undefined || value === '' ? undefined : value;
  };

  const address = setting('addr') ?? DEFAULT_ADDRESS;
  const { host, port } = parseAddress(address);
  const ttl = setting('job-ttl');
  const grace = setting('kill-grace');
  const bodyLimit = setting('body-limit');
  let bodyLimitBytes = DEFAULT_BODY_LIMIT_BYTES;
  if (bodyLimit !== undefined) {
    if (!/^\d+$/.test(bodyLimit) || Number(bodyLimit) < 1) {
      throw new UsageError(`--body-limit: want a positive number of bytes, got ${bodyLimit}`);
    }
    bodyLimitBytes = Number(bodyLimit);
  }
  const tlsCert = setting('tls-cert');
  const tlsKey = setting('tls-key');
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw new UsageError('--tls-cert and --tls-key go together');
  }
  const logLevel = setting('log-level') ?? 'warn';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new UsageError(`--log-level: want one of ${LOG_LEVELS.join(', ')}, got ${logLevel}`);
  }
  const dataDir = setting('data-dir');
  return {
    kind: 'serve',
    settings: {
      address,
      host,
      port,
      secret: setting('secret'),
      dataDir: path.resolve(dataDir ?? defaultDataDir(env)),
      jobTtlMs: ttl === undefined ? DEFAULT_JOB_TTL_MS : durationSetting('job-ttl', ttl),
      killGraceMs:
        grace === undefined ? DEFAULT_KILL_GRACE_MS : durationSetting('kill-grace', grace),
      bodyLimitBytes,
      tlsCert,
      tlsKey,
      logLevel: logLevel as LogLevel,
    },
  };
}
