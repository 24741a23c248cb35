/**
 * `levity`: the client. Prints what the original printed (an id; a state and
 * an exit code; nothing; the task's output), or JSON with `--json`. Exit
 * status 0 on success; 1 with one line on stderr for any failure.
 */
import { readFile } from 'node:fs/promises';
import { once } from 'node:events';
import {
  logVerbosity,
  setLogVerbosity,
  status as grpcStatus,
  type ServiceError,
} from '@grpc/grpc-js';
import { UsageError } from './flags.js';
import {
  parseLevityCommandLine,
  type ConnectionSettings,
  type LevityCommand,
} from './levity-cli.js';
import { createLevityClient, type LevityClient, type LevityClientTls } from './levity-client.js';

/** gRPC status names as Go's `codes.Code.String()` spells them (the original printed those). */
const GO_CODE_NAMES = [
  'OK',
  'Canceled',
  'Unknown',
  'InvalidArgument',
  'DeadlineExceeded',
  'NotFound',
  'AlreadyExists',
  'PermissionDenied',
  'ResourceExhausted',
  'FailedPrecondition',
  'Aborted',
  'OutOfRange',
  'Unimplemented',
  'Internal',
  'Unavailable',
  'DataLoss',
  'Unauthenticated',
];

function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as Partial<ServiceError>).code === 'number';
}

/** A failure as one line. */
function describeFailure(error: unknown): { line: string; code: string | undefined } {
  if (isServiceError(error)) {
    const code = GO_CODE_NAMES[error.code] ?? String(error.code);
    // grpc-js appends the time of the last connection error: noise on a terminal.
    let details = error.details
      .replace(/\. Resolution note: *$/, '')
      .replace(/ \(\d{4}-\d\d-\d\dT[\d:.]+Z\)$/, '');
    // A TLS failure in the words of Go's gRPC, which the original printed.
    const tlsFailure =
      /^No connection established\. Last error: (?:Error: )?(.*(?:certificate|SSL|TLS|handshake|alert).*)$/i.exec(
        details,
      );
    if (error.code === grpcStatus.UNAVAILABLE && tlsFailure?.[1] !== undefined) {
      details = `connection error: desc = "transport: authentication handshake failed: ${tlsFailure[1]}"`;
    }
    return { line: `GRPC request failed: rpc error: code = ${code} desc = ${details}`, code };
  }
  return { line: error instanceof Error ? error.message : String(error), code: undefined };
}

function fail(error: unknown, json: boolean): void {
  const { line, code } = describeFailure(error);
  const text = json
    ? JSON.stringify({ error: { ...(code === undefined ? {} : { code }), message: line } })
    : `levity: ${line.replace(/\s*\n\s*/g, ' ')}`;
  process.stderr.write(`${text}\n`);
  process.exitCode = 1;
}

/** Write and wait until the stream took it (backpressure, and nothing lost at exit). */
async function write(stream: NodeJS.WriteStream, data: Buffer | string): Promise<void> {
  if (data.length === 0) return;
  if (!stream.write(data)) await once(stream, 'drain');
}

/** Bytes for JSON: a string when they are UTF-8, else base64 under `<key>_base64`. */
function jsonBytes(key: string, data: Buffer): Record<string, string> {
  const text = data.toString('utf8');
  return Buffer.from(text, 'utf8').equals(data)
    ? { [key]: text }
    : { [`${key}_base64`]: data.toString('base64') };
}

async function loadTls(connection: ConnectionSettings): Promise<LevityClientTls | undefined> {
  const tls = connection.tls;
  if (tls === undefined) return undefined;
  const result: LevityClientTls = {};
  if (tls.ca !== undefined) result.ca = await readFile(tls.ca);
  if (tls.cert !== undefined) result.cert = await readFile(tls.cert);
  if (tls.key !== undefined) result.key = await readFile(tls.key);
  return result;
}

async function run(
  command: Exclude<LevityCommand, { kind: 'help' }>,
  client: LevityClient,
): Promise<void> {
  const { json } = command.connection;
  switch (command.kind) {
    case 'start': {
      const id = await client.start({
        binary: command.binary,
        args: command.args,
        environment: command.environment,
        ...(command.workingDir === undefined ? {} : { working_dir: command.workingDir }),
      });
      await write(process.stdout, json ? `${JSON.stringify({ id })}\n` : `${id}\n`);
      return;
    }
    case 'query': {
      const status = await client.query(command.id);
      if (json) {
        const body = {
          state: status.state,
          ...(status.exitCode === undefined ? {} : { exit_code: status.exitCode }),
        };
        await write(process.stdout, `${JSON.stringify(body)}\n`);
      } else {
        await write(
          process.stdout,
          `${status.state}\n${status.exitCode === undefined ? '' : `${status.exitCode}\n`}`,
        );
      }
      return;
    }
    case 'signal':
      await client.signal(command.id);
      if (json) await write(process.stdout, `${JSON.stringify({ id: command.id })}\n`);
      return;
    case 'logs': {
      if (command.follow) {
        for await (const chunk of client.followLogs(command.id)) {
          if (json) {
            const line = JSON.stringify({ stream: chunk.stream, ...jsonBytes('data', chunk.data) });
            await write(process.stdout, `${line}\n`);
          } else {
            await write(process[chunk.stream], chunk.data);
          }
        }
        return;
      }
      const logs = await client.fetchLogs(command.id);
      if (json) {
        const body = { ...jsonBytes('stdout', logs.stdout), ...jsonBytes('stderr', logs.stderr) };
        await write(process.stdout, `${JSON.stringify(body)}\n`);
      } else {
        await write(process.stdout, logs.stdout);
        await write(process.stderr, logs.stderr);
      }
      return;
    }
  }
}

async function main(args: readonly string[]): Promise<void> {
  const json = args.includes('--json');
  let command: LevityCommand;
  try {
    command = parseLevityCommandLine(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    fail(new Error(`${error.message} (see 'levity --help')`), json);
    return;
  }
  if (command.kind === 'help') {
    await write(process.stdout, command.text);
    return;
  }
  let client: LevityClient | undefined;
  try {
    const tls = await loadTls(command.connection);
    client = createLevityClient({
      address: command.connection.address,
      timeoutMs: command.connection.timeoutMs,
      token: command.connection.token,
      tls,
    });
    await run(command, client);
  } catch (error) {
    fail(error, command.connection.json);
  } finally {
    client?.close();
  }
}

// Failures are reported once, as one line: grpc-js keeps its own lines to itself.
setLogVerbosity(logVerbosity.NONE);

// grpc-js sets the TLS server name to the address even when it is an IP
// (`-a 127.0.0.1:4321`), which Node flags once per process: noise on stderr,
// where a failure must be one line.
const emitWarning = process.emitWarning.bind(process) as (...args: unknown[]) => void;
process.emitWarning = (...args: unknown[]) => {
  const options = args[1];
  const code =
    typeof options === 'object' && options !== null
      ? (options as { code?: unknown }).code
      : args[2];
  if (code === 'DEP0123') return;
  emitWarning(...args);
};

// A reader that went away (`levity logs ID | head`) is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});

main(process.argv.slice(2)).catch((error: unknown) => fail(error, false));
