/**
 * Command line of `smartmob-agent`. Flags take their defaults from
 * `SMARTMOB_*` environment variables; durations are `250ms`, `5s`, `2m`, `1h`
 * or a number of milliseconds; sizes are bytes or `64k`, `10M`, `1G`.
 */
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { SmartmobAgentOptions } from './agent.js';

/** What the command line asks for. */
export type CliCommand =
  { kind: 'help' } | { kind: 'version' } | { kind: 'serve'; settings: ServeSettings };

/** Settings for a run of the agent. */
export type ServeSettings = Omit<SmartmobAgentOptions, 'logger' | 'env' | 'onLine'> & {
  logLevel: string;
  /** Print every console line on stdout with time and slug. */
  logOutput: boolean;
};

/** A command line that cannot be used (exit 2). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

interface Flag {
  name: string;
  env?: string;
  placeholder?: string;
  boolean?: boolean;
  default?: string;
  help: string;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

const FLAGS: readonly Flag[] = [
  {
    name: 'host',
    env: 'SMARTMOB_HOST',
    placeholder: 'HOST',
    default: '127.0.0.1',
    help: 'interface to listen on; beyond loopback needs --token or --insecure',
  },
  {
    name: 'port',
    env: 'SMARTMOB_PORT',
    placeholder: 'PORT',
    default: '8080',
    help: 'port to listen on; 0 picks a free one',
  },
  {
    name: 'data-dir',
    env: 'SMARTMOB_DATA_DIR',
    placeholder: 'DIR',
    help: 'records, output and unpacked sources (default $XDG_STATE_HOME/smartmob-agent or ~/.local/state/smartmob-agent)',
  },
  {
    name: 'token',
    env: 'SMARTMOB_TOKEN',
    placeholder: 'TOKEN',
    help: 'bearer token every request must carry (Authorization: Bearer TOKEN, or ?access_token=)',
  },
  {
    name: 'insecure',
    boolean: true,
    help: 'listen beyond loopback without a token (put auth in front of it)',
  },
  {
    name: 'kill-grace',
    env: 'SMARTMOB_KILL_GRACE',
    placeholder: 'DURATION',
    default: '10s',
    help: 'SIGTERM to SIGKILL on delete and shutdown',
  },
  {
    name: 'restart-initial-delay',
    env: 'SMARTMOB_RESTART_INITIAL_DELAY',
    placeholder: 'DURATION',
    default: '1s',
    help: 'delay before restarting a process that exited; doubles per quick exit',
  },
  {
    name: 'restart-max-delay',
    env: 'SMARTMOB_RESTART_MAX_DELAY',
    placeholder: 'DURATION',
    default: '1m',
    help: 'cap on the restart delay',
  },
  {
    name: 'restart-reset-after',
    env: 'SMARTMOB_RESTART_RESET_AFTER',
    placeholder: 'DURATION',
    default: '30s',
    help: 'a run this long resets the restart delay',
  },
  {
    name: 'download-timeout',
    env: 'SMARTMOB_DOWNLOAD_TIMEOUT',
    placeholder: 'DURATION',
    default: '5m',
    help: 'limit for downloading a source archive',
  },
  {
    name: 'max-archive-size',
    env: 'SMARTMOB_MAX_ARCHIVE_SIZE',
    placeholder: 'SIZE',
    default: '256M',
    help: 'largest source archive downloaded',
  },
  {
    name: 'max-unpacked-size',
    env: 'SMARTMOB_MAX_UNPACKED_SIZE',
    placeholder: 'SIZE',
    default: '1G',
    help: 'most bytes an archive may unpack to',
  },
  {
    name: 'max-files',
    env: 'SMARTMOB_MAX_FILES',
    placeholder: 'COUNT',
    default: '100000',
    help: 'most entries (files, directories, links) in an archive',
  },
  {
    name: 'output-max',
    env: 'SMARTMOB_OUTPUT_MAX',
    placeholder: 'SIZE',
    default: '64M',
    help: 'console output kept on disk per process; the oldest goes past it',
  },
  {
    name: 'body-limit',
    env: 'SMARTMOB_BODY_LIMIT',
    placeholder: 'SIZE',
    default: '64k',
    help: 'largest request body',
  },
  {
    name: 'quiet',
    boolean: true,
    help: 'do not print process output (by default each line goes to stdout as "TIME SLUG: LINE")',
  },
  {
    name: 'log-level',
    env: 'SMARTMOB_LOG_LEVEL',
    placeholder: 'LEVEL',
    default: 'warn',
    help: `${LOG_LEVELS.join(', ')}; the agent's log goes to stderr as JSON lines`,
  },
  { name: 'help', boolean: true, help: 'print usage and exit' },
  { name: 'version', boolean: true, help: 'print the version and exit' },
];

/** The help text. */
export function usage(): string {
  const lines = [
    'Usage: smartmob-agent [options]',
    '',
    'Runs Procfile applications from source archives (zip, tar, tar.gz, tar.bz2,',
    'tar.xz) for REST clients, restarts them when they exit until they are',
    'deleted, and streams their console over WebSockets.',
    '',
    'Routes: GET /, GET /list-processes, POST /create-process,',
    '        GET /process-status/SLUG, POST /delete-process/SLUG,',
    '        GET /attach-console/SLUG[?cursor=LINES] (WebSocket, a text frame per line)',
    '',
    'Options:',
  ];
  for (const flag of FLAGS) {
    lines.push(`  --${flag.name}${flag.placeholder ? ` ${flag.placeholder}` : ''}`);
    const extra = [
      flag.default === undefined ? undefined : `default ${flag.default}`,
      flag.env === undefined ? undefined : `env ${flag.env}`,
    ].filter((item) => item !== undefined);
    lines.push(`      ${flag.help}${extra.length > 0 ? ` (${extra.join('; ')})` : ''}`);
  }
  lines.push('', 'SIGINT or SIGTERM stops every process (SIGTERM, grace, SIGKILL) and exits 0.');
  return `${lines.join('\n')}\n`;
}

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};
const SIZE_UNITS: Readonly<Record<string, number>> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
/** setTimeout's longest delay. */
const MAX_DURATION_MS = 2_147_483_647;

/** `250ms`, `5s`, `1.5m`, `2h`, or milliseconds. */
export function parseDuration(name: string, value: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!match)
    throw new UsageError(
      `--${name}: want a duration such as 500ms, 5s or 2m, not ${JSON.stringify(value)}`,
    );
  const ms = Math.round(Number(match[1]) * (DURATION_UNITS[match[2] ?? 'ms'] as number));
  if (ms > MAX_DURATION_MS) throw new UsageError(`--${name}: ${value} is too long`);
  return ms;
}

/** Bytes, or with a `k`, `M`, `G` suffix (powers of 1024). */
export function parseSize(name: string, value: string): number {
  const match = /^(\d+)([kmg])?i?b?$/i.exec(value.trim());
  const bytes = match
    ? Number(match[1]) * (SIZE_UNITS[(match[2] ?? '').toLowerCase()] as number)
    : NaN;
  if (!Number.isSafeInteger(bytes) || bytes < 1) {
    throw new UsageError(
      `--${name}: want a size such as 65536, 64k or 10M, not ${JSON.stringify(value)}`,
    );
  }
  return bytes;
}

/** The default data directory: `$XDG_STATE_HOME/smartmob-agent`, else `~/.local/state/smartmob-agent`. */
export function defaultDataDir(env: NodeJS.ProcessEnv): string {
  const stateHome = env.XDG_STATE_HOME;
  if (stateHome !== undefined && path.isAbsolute(stateHome))
    return path.join(stateHome, 'smartmob-agent');
  return path.join(env.HOME ?? os.homedir(), '.local', 'state', 'smartmob-agent');
}

/**
 * Parse the command line (without `node` and the script) over the environment.
 *
 * @throws UsageError for an unknown flag, a bad value or a stray argument.
 */
export function parseCommandLine(
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): CliCommand {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      options: Object.fromEntries(
        FLAGS.map((flag) => [flag.name, { type: flag.boolean ? 'boolean' : 'string' } as const]),
      ),
      strict: true,
      allowPositionals: false,
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help === true) return { kind: 'help' };
  if (values.version === true) return { kind: 'version' };
  const setting = (name: string): string | undefined => {
    const flag = FLAGS.find((candidate) => candidate.name === name) as Flag;
    const value = values[name] ?? (flag.env === undefined ? undefined : env[flag.env]);
    const text = typeof value === 'string' && value !== '' ? value : undefined;
    return text ?? flag.default;
  };
  const port = Number(setting('port'));
  if (!/^\d{1,5}$/.test(setting('port') ?? '') || port > 65_535) {
    throw new UsageError(`--port: want 0 to 65535, not ${JSON.stringify(setting('port'))}`);
  }
  const logLevel = setting('log-level') as string;
  if (!LOG_LEVELS.includes(logLevel))
    throw new UsageError(`--log-level: want one of ${LOG_LEVELS.join(', ')}`);
  const token = setting('token');
  if (token !== undefined && !/^[\x21-\x7e]+$/.test(token)) {
    throw new UsageError('--token must be printable ASCII without spaces (it travels in a header)');
  }
  const maxFiles = Number(setting('max-files'));
  if (!Number.isSafeInteger(maxFiles) || maxFiles < 1)
    throw new UsageError('--max-files: want a positive number');
  const duration = (name: string) => parseDuration(name, setting(name) as string);
  const size = (name: string) => parseSize(name, setting(name) as string);
  return {
    kind: 'serve',
    settings: {
      host: setting('host') as string,
      port,
      dataDir: path.resolve(setting('data-dir') ?? defaultDataDir(env)),
      token,
      insecure: values.insecure === true,
      limits: {
        downloadTimeoutMs: duration('download-timeout'),
        maxArchiveBytes: size('max-archive-size'),
        maxUnpackedBytes: size('max-unpacked-size'),
        maxEntries: maxFiles,
      },
      policy: {
        killGraceMs: duration('kill-grace'),
        restartInitialDelayMs: duration('restart-initial-delay'),
        restartMaxDelayMs: duration('restart-max-delay'),
        restartResetAfterMs: duration('restart-reset-after'),
      },
      bodyLimitBytes: size('body-limit'),
      outputMaxBytes: size('output-max'),
      logLevel,
      logOutput: values.quiet !== true,
    },
  };
}
