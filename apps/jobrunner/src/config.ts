/**
 * jobrunner is configured by environment variables only, as the original was.
 */
import { isLoopbackHost, OverthereError } from '@overthere/core';

/** What the environment says. */
export interface JobrunnerConfig {
  /** Interface to listen on. */
  host: string;
  /** Port to listen on; 0 picks a free one. */
  port: number;
  /** Bearer token every request must carry; undefined = no auth (loopback only). */
  token: string | undefined;
  /** Between SIGTERM and SIGKILL when a job is killed. */
  killGraceMs: number;
  /** Finished jobs are forgotten this long after they end; 0 keeps them until deleted. */
  jobTtlMs: number;
  /** pino level for the log on stderr. */
  logLevel: string;
}

export const DEFAULT_PORT = 8080;
export const DEFAULT_KILL_GRACE_MS = 5_000;
export const DEFAULT_JOB_TTL_MS = 60 * 60 * 1000;
export const DEFAULT_LOG_LEVEL = 'warn';
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Names of the variables read, for `--help`. */
export const ENVIRONMENT_HELP = `Environment:
  JOBRUNNER_PORT            port to listen on (default ${DEFAULT_PORT}; 0 picks a free port)
  JOBRUNNER_HOSTNAME        interface to listen on. Empty or unset: 127.0.0.1 without a
                            token, all interfaces (0.0.0.0) with one. A non-loopback
                            address needs JOBRUNNER_TOKEN.
  JOBRUNNER_TOKEN           bearer token; when set every request needs
                            "Authorization: Bearer <token>"
  JOBRUNNER_KILL_GRACE_MS   time between SIGTERM and SIGKILL when a job is killed
                            (default ${DEFAULT_KILL_GRACE_MS})
  JOBRUNNER_JOB_TTL_MS      forget finished jobs and their output this long after they
                            end (default ${DEFAULT_JOB_TTL_MS}, one hour; 0 keeps them until DELETE)
  JOBRUNNER_LOG_LEVEL       ${LOG_LEVELS.join(', ')} (default ${DEFAULT_LOG_LEVEL}); JSON lines on stderr`;

function invalid(message: string): never {
  throw new OverthereError('INVALID_ARGUMENT', message);
}

function integer(
  env: Readonly<Record<string, string | undefined>>,
  name: string,
  fallback: number,
  max: number,
): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const text = raw.trim();
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value > max) {
    invalid(`${name} must be an integer from 0 to ${max}, not ${JSON.stringify(raw)}`);
  }
  return value;
}

/**
 * Read the configuration. An empty variable counts as unset.
 *
 * @throws OverthereError `INVALID_ARGUMENT` naming the variable.
 */
export function configFromEnv(env: Readonly<Record<string, string | undefined>>): JobrunnerConfig {
  const rawToken = env.JOBRUNNER_TOKEN;
  const token = rawToken === undefined || rawToken === '' ? undefined : rawToken;
  if (token !== undefined && !/^[\x21-\x7e]+$/.test(token)) {
    invalid('JOBRUNNER_TOKEN must be printable ASCII without spaces (it travels in a header)');
  }
  const hostname = (env.JOBRUNNER_HOSTNAME ?? '').trim();
  // The original's "" meant every interface; we only do that when requests are authenticated.
  const host = hostname !== '' ? hostname : token === undefined ? '127.0.0.1' : '0.0.0.0';
  if (token === undefined && !isLoopbackHost(host)) {
    invalid(
      `refusing to listen on ${host} without auth: anyone who can reach it could run commands. Set JOBRUNNER_TOKEN, or listen on 127.0.0.1`,
    );
  }
  const logLevel = (env.JOBRUNNER_LOG_LEVEL ?? '').trim() || DEFAULT_LOG_LEVEL;
  if (!LOG_LEVELS.includes(logLevel)) {
    invalid(`JOBRUNNER_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);
  }
  return {
    host,
    port: integer(env, 'JOBRUNNER_PORT', DEFAULT_PORT, 65_535),
    token,
    killGraceMs: integer(env, 'JOBRUNNER_KILL_GRACE_MS', DEFAULT_KILL_GRACE_MS, 3_600_000),
    jobTtlMs: integer(env, 'JOBRUNNER_JOB_TTL_MS', DEFAULT_JOB_TTL_MS, 365 * 24 * 3_600_000),
    logLevel,
  };
}
