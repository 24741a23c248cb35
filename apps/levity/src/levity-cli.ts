/**
 * The `levity` command line: the original's commands, flags and help (it was
 * a cobra program), plus opt-in extras: `logs -f`, `--json`, TLS and a token.
 *
 *   levity -a HOST:PORT [-t 5s] start [-d DIR] [-D NAME=VALUE]… [--] command [args…]
 *   levity -a HOST:PORT query ID | signal ID | logs [-f] ID
 *   levity help [command]
 *
 * Global flags may come anywhere before `--` (and, for `start`, before the
 * command to run: everything from the command on goes to the task).
 */
import { parseGoDuration } from './go-format.js';
import {
  FlagValues,
  UsageError,
  flagLabel,
  formatFlags,
  isFlag,
  parseFlag,
  type FlagSpec,
} from './flags.js';

/** The original's default for `-t`. */
export const DEFAULT_TIMEOUT_MS = 5_000;

const GLOBAL_FLAGS: readonly FlagSpec[] = [
  { name: 'address', short: 'a', kind: 'string', usage: 'The server address and port' },
  {
    name: 'timeout',
    short: 't',
    kind: 'duration',
    usage: 'Timeout for GRPC requests (for logs -f: for connecting)',
    defaultText: '5s',
  },
  {
    name: 'token',
    kind: 'string',
    usage: 'Send this token to the server (authorization: Bearer); default $LEVITY_TOKEN',
  },
  { name: 'tls', kind: 'bool', usage: "Connect with TLS, checking the server's certificate" },
  {
    name: 'ca',
    kind: 'string',
    usage: "Connect with TLS, checking the server's certificate against this CA file (PEM)",
  },
  {
    name: 'cert',
    kind: 'string',
    usage: 'Connect with TLS and present this client certificate (PEM; needs --key)',
  },
  { name: 'key', kind: 'string', usage: 'Private key for --cert (PEM)' },
  { name: 'insecure', kind: 'bool', usage: 'Connect without TLS (the default)' },
  { name: 'json', kind: 'bool', usage: 'Print results as JSON' },
];

const HELP_FLAG: FlagSpec = { name: 'help', short: 'h', kind: 'bool', usage: 'help for' };

interface CommandSpec {
  name: string;
  use: string;
  short: string;
  long?: string;
  flags: readonly FlagSpec[];
  /** [min, max] positional arguments. */
  args: readonly [number, number];
  example?: string;
}

const COMMANDS: readonly CommandSpec[] = [
  {
    name: 'start',
    use: 'start command [arg1...]',
    short: 'Start a task on the server',
    long:
      'Start a task on the server and print its ID. The command is looked up on the\n' +
      "server's PATH and run without a shell, with exactly the environment given by\n" +
      '-D. Everything from the command on is passed to the task; use -- before a\n' +
      'command that starts with a dash.',
    flags: [
      {
        name: 'dir',
        short: 'd',
        kind: 'string',
        usage: 'Optionally set the working dir on the server',
      },
      {
        name: 'define',
        short: 'D',
        kind: 'stringArray',
        usage: 'Define an environment variable, in the form FOO=BAR',
      },
    ],
    args: [1, Infinity],
    example:
      '  levity -a example.com:4321 start -D GREETING=hi -- sh -c \'echo "$GREETING"; ls -la\'',
  },
  {
    name: 'query',
    use: 'query [task-id]',
    short: 'Fetch the task status',
    long:
      'Print the task state (NotStarted, Running, Signalled, Finished, BrutallyKilled,\n' +
      'InternalServerError) and, when it is Finished, its exit code on a second line\n' +
      '(-1 when a signal ended it).',
    flags: [],
    args: [1, 1],
  },
  {
    name: 'signal',
    use: 'signal [task-id]',
    short: 'Signal the task to quit',
    long:
      "Send SIGTERM to the task's processes; the server kills them with SIGKILL if\n" +
      'they have not exited after its grace period (5 s by default). Does not wait\n' +
      'for the task to exit: watch it with query.',
    flags: [],
    args: [1, 1],
  },
  {
    name: 'logs',
    use: 'logs [task-id]',
    short: 'Fetch the task logs',
    long:
      'Fetch task output (stdout & stderr). Streams are written to the corresponding\n' +
      'client stream. With -f, keep writing output as the task produces it, until\n' +
      'the task has ended.',
    flags: [
      {
        name: 'follow',
        short: 'f',
        kind: 'bool',
        usage: 'Follow the output until the task ends (needs an overthere levityd)',
      },
    ],
    args: [1, 1],
  },
];

/** TLS settings of the client; undefined means plaintext. */
export interface ClientTlsSettings {
  ca?: string;
  cert?: string;
  key?: string;
}

/** Settings every command that talks to the server shares. */
export interface ConnectionSettings {
  address: string;
  timeoutMs: number;
  token: string | undefined;
  tls: ClientTlsSettings | undefined;
  json: boolean;
}

/** What the command line asks for. */
export type LevityCommand =
  | { kind: 'help'; text: string }
  | {
      kind: 'start';
      connection: ConnectionSettings;
      binary: string;
      args: string[];
      workingDir: string | undefined;
      environment: Record<string, string>;
    }
  | { kind: 'query' | 'signal'; connection: ConnectionSettings; id: string }
  | { kind: 'logs'; connection: ConnectionSettings; id: string; follow: boolean };

function findCommand(name: string): CommandSpec | undefined {
  return COMMANDS.find((command) => command.name === name);
}

/** The root help: `levity`, `levity help`, `levity --help`. */
export function rootHelp(): string {
  const commands = [
    ['help', 'Help about any command'],
    ...COMMANDS.map((command) => [command.name, command.short]),
  ].sort((a, b) => (a[0] as string).localeCompare(b[0] as string));
  return (
    'Levity is a remote task runner: start tasks on a levityd server, query them,\n' +
    'signal them to quit and fetch their output.\n\n' +
    'Usage:\n  levity [command]\n\n' +
    'Available Commands:\n' +
    commands
      .map(([name, short]) => `  ${(name as string).padEnd(11)} ${short as string}\n`)
      .join('') +
    '\nFlags:\n' +
    formatFlags([...GLOBAL_FLAGS, { ...HELP_FLAG, usage: 'help for levity' }]) +
    '\nUse "levity [command] --help" for more information about a command.\n'
  );
}

/** Help for one command: `levity help start`, `levity start --help`. */
export function commandHelp(name: string): string {
  if (name === 'help') {
    return (
      'Help provides help for any command in the application.\n' +
      'Simply type levity help [path to command] for full details.\n\n' +
      'Usage:\n  levity help [command] [flags]\n\n' +
      'Flags:\n' +
      formatFlags([{ ...HELP_FLAG, usage: 'help for help' }]) +
      '\nGlobal Flags:\n' +
      formatFlags(GLOBAL_FLAGS)
    );
  }
  const command = findCommand(name);
  if (!command) throw new UsageError(`unknown help topic [\`${name}\`]`);
  return (
    `${command.long ?? command.short}\n\n` +
    `Usage:\n  levity ${command.use} [flags]\n\n` +
    (command.example === undefined ? '' : `Examples:\n${command.example}\n\n`) +
    'Flags:\n' +
    formatFlags([...command.flags, { ...HELP_FLAG, usage: `help for ${command.name}` }]) +
    '\nGlobal Flags:\n' +
    formatFlags(GLOBAL_FLAGS)
  );
}

function parseDefine(text: string): [string, string] {
  const equals = text.indexOf('=');
  const name = equals === -1 ? text : text.slice(0, equals);
  // As the original: NAME alone sets it to the empty string.
  const value = equals === -1 ? '' : text.slice(equals + 1);
  if (name === '' || name.includes('\0')) {
    throw new UsageError(
      `invalid argument ${JSON.stringify(text)} for "-D, --define" flag: want NAME=VALUE`,
    );
  }
  return [name, value];
}

function connectionSettings(values: FlagValues, env: NodeJS.ProcessEnv): ConnectionSettings {
  const address = values.last('address');
  if (address === undefined || address === '') {
    throw new UsageError('required flag(s) "address" not set');
  }
  let timeoutMs = DEFAULT_TIMEOUT_MS;
  const timeout = values.last('timeout');
  if (timeout !== undefined) {
    try {
      timeoutMs = parseGoDuration(timeout);
    } catch (error) {
      const timeoutFlag = GLOBAL_FLAGS.find((flag) => flag.name === 'timeout') as FlagSpec;
      throw new UsageError(
        `invalid argument ${JSON.stringify(timeout)} for "${flagLabel(timeoutFlag)}" flag: ${(error as Error).message}`,
      );
    }
  }
  const tokenFlag = values.last('token');
  const token =
    tokenFlag !== undefined && tokenFlag !== '' ? tokenFlag : env.LEVITY_TOKEN || undefined;
  const ca = values.last('ca') || undefined;
  const cert = values.last('cert') || undefined;
  const key = values.last('key') || undefined;
  if ((cert === undefined) !== (key === undefined))
    throw new UsageError('--cert and --key go together');
  const wantsTls = values.bool('tls') || ca !== undefined || cert !== undefined;
  if (wantsTls && values.bool('insecure')) {
    throw new UsageError('--insecure cannot be combined with --tls, --ca, --cert or --key');
  }
  const tls: ClientTlsSettings | undefined = wantsTls
    ? {
        ...(ca === undefined ? {} : { ca }),
        ...(cert === undefined ? {} : { cert }),
        ...(key === undefined ? {} : { key }),
      }
    : undefined;
  return { address, timeoutMs, token, tls, json: values.bool('json') };
}

/**
 * Parse `levity`'s arguments (without `node` and the script).
 *
 * @throws UsageError with a one-line message (cobra's wording where the
 *   original had one).
 */
export function parseLevityCommandLine(
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): LevityCommand {
  const values = new FlagValues();
  let command: CommandSpec | 'help' | undefined;
  const positionals: string[] = [];
  let index = 0;
  while (index < args.length) {
    const arg = args[index] as string;
    if (arg === '--') {
      positionals.push(...args.slice(index + 1));
      break;
    }
    if (isFlag(arg)) {
      const local = command === undefined || command === 'help' ? [] : command.flags;
      index = parseFlag(args, index, [...GLOBAL_FLAGS, HELP_FLAG, ...local], values);
      continue;
    }
    index += 1;
    if (command === undefined) {
      const found = arg === 'help' ? 'help' : findCommand(arg);
      if (!found) throw new UsageError(`unknown command ${JSON.stringify(arg)} for "levity"`);
      command = found;
      continue;
    }
    positionals.push(arg);
    // The task's command line is the task's: no levity flags inside it.
    if (command !== 'help' && command.name === 'start') {
      positionals.push(...args.slice(index));
      break;
    }
  }

  if (command === undefined) return { kind: 'help', text: rootHelp() };
  if (command === 'help') {
    const topic = positionals[0];
    return { kind: 'help', text: topic === undefined ? rootHelp() : commandHelp(topic) };
  }
  if (values.bool('help')) return { kind: 'help', text: commandHelp(command.name) };

  const [min, max] = command.args;
  if (positionals.length < min) {
    throw new UsageError(
      max === min
        ? `accepts ${min} arg(s), received ${positionals.length}`
        : `requires at least ${min} arg(s), only received ${positionals.length}`,
    );
  }
  if (positionals.length > max) {
    throw new UsageError(`accepts ${max} arg(s), received ${positionals.length}`);
  }
  const connection = connectionSettings(values, env);
  switch (command.name) {
    case 'start': {
      const environment: Record<string, string> = {};
      for (const define of values.all('define')) {
        const [name, value] = parseDefine(define);
        environment[name] = value;
      }
      const dir = values.last('dir');
      return {
        kind: 'start',
        connection,
        binary: positionals[0] as string,
        args: positionals.slice(1),
        workingDir: dir === undefined || dir === '' ? undefined : dir,
        environment,
      };
    }
    case 'logs':
      return {
        kind: 'logs',
        connection,
        id: positionals[0] as string,
        follow: values.bool('follow'),
      };
    default:
      return { kind: command.name as 'query' | 'signal', connection, id: positionals[0] as string };
  }
}
