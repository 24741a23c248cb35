/**
 * Command line and environment of `overthere-agent`. Flags win over the
 * environment; secrets may come from the environment so they stay out of `ps`.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

/** What the agent runs with. */
export interface AgentOptions {
  host: string;
  port: number;
  token: string | undefined;
  allowUnauthenticated: boolean;
  dataDir: string;
  /** Forget finished tasks after this long; undefined keeps them. */
  ttlMs: number | undefined;
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  logLevel: string;
  /** Output kept on disk per task; undefined: core's default (64 MiB). */
  outputMaxBytes: number | undefined;
}

/** What the command line asks for: run, or print something and exit. */
export type AgentCommand =
  { kind: 'run'; options: AgentOptions } | { kind: 'help' } | { kind: 'version' };

export const USAGE = `Usage: overthere-agent [options]

Serves the overthere /v1 HTTP API (docs/http-protocol.md): run commands on
this machine, stream their output, attach over WebSocket.

Options:
  --host HOST            interface to bind (default 127.0.0.1; env OVERTHERE_HOST)
  --port PORT            port (default 7070; 0 picks one; env OVERTHERE_PORT)
  --token TOKEN          bearer token required on every route but /healthz
                         (env OVERTHERE_TOKEN); needed to listen beyond loopback
  --allow-unauthenticated  listen beyond loopback without a token (auth is in front)
  --data-dir DIR         task records and output (default ~/.local/state/overthere;
                         env OVERTHERE_DATA_DIR)
  --ttl DURATION         forget finished tasks after e.g. 30s, 10m, 24h (default: keep)
  --output-max SIZE      output kept on disk per task, e.g. 64M, 2G (default 64M);
                         older output is dropped and readers get a gap
  --tls-cert FILE        serve HTTPS with this certificate (PEM) ...
  --tls-key FILE         ... and key
  --log-level LEVEL      trace, debug, info, warn, error, fatal, silent (default info)
  -h, --help             print this and exit
  -V, --version          print the version and exit
`;

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

const SIZE = /^(\d+)([KMG]?)i?B?$/i;
const UNIT_BYTES: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/** `4096`, `512K`, `64M`, `2G` (binary units) in bytes; throws on anything else. */
export function parseSize(text: string): number {
  const match = SIZE.exec(text.trim());
  if (!match?.[1]) throw new Error(`invalid size ${JSON.stringify(text)} (e.g. 64M, 2G)`);
  return Number(match[1]) * (UNIT_BYTES[(match[2] ?? '').toUpperCase()] ?? 1);
}

/** `500ms`, `30s`, `10m`, `24h`, `7d` in ms; throws on anything else. */
export function parseDuration(text: string): number {
  const match = DURATION.exec(text.trim());
  if (!match?.[1] || !match[2])
    throw new Error(`invalid duration ${JSON.stringify(text)} (e.g. 30s, 10m, 24h)`);
  return Math.round(Number(match[1]) * (UNIT_MS[match[2]] ?? 1));
}

function parsePort(text: string): number {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    throw new Error(`invalid port ${JSON.stringify(text)}`);
  return port;
}

/** Parse argv (without node and script) and the environment. Throws with a one-line message on bad input. */
export function parseAgentCommand(argv: readonly string[], env: NodeJS.ProcessEnv): AgentCommand {
  const { values, positionals } = parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: true,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      token: { type: 'string' },
      'allow-unauthenticated': { type: 'boolean' },
      'data-dir': { type: 'string' },
      ttl: { type: 'string' },
      'output-max': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'V' },
    },
  });
  if (values.help) return { kind: 'help' };
  if (values.version) return { kind: 'version' };
  if (positionals.length > 0)
    throw new Error(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const tlsCert = values['tls-cert'];
  const tlsKey = values['tls-key'];
  if ((tlsCert === undefined) !== (tlsKey === undefined))
    throw new Error('--tls-cert and --tls-key go together');
  const ttl = values.ttl;
  const token = values.token ?? env.OVERTHERE_TOKEN;
  return {
    kind: 'run',
    options: {
      host: values.host ?? env.OVERTHERE_HOST ?? '127.0.0.1',
      port: parsePort(values.port ?? env.OVERTHERE_PORT ?? '7070'),
      token: token === '' ? undefined : token,
      allowUnauthenticated: values['allow-unauthenticated'] ?? false,
      dataDir:
        values['data-dir'] ??
        env.OVERTHERE_DATA_DIR ??
        join(env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state'), 'overthere'),
      ttlMs: ttl === undefined ? undefined : parseDuration(ttl),
      tlsCert,
      tlsKey,
      logLevel: values['log-level'] ?? 'info',
      outputMaxBytes:
        values['output-max'] === undefined ? undefined : parseSize(values['output-max']),
    },
  };
}
