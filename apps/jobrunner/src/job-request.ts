/**
 * The body of `POST /`, checked and normalised. The wire names are the
 * original's (`CommandLine`, `Environment`) plus the seed's "future updates"
 * (`WorkingDirectory`, `Commands`, `Container`). Field names match
 * case-insensitively, as Go's encoding/json did for the original server, and a
 * JSON `null` is the same as an absent field (what a Go client sends for a nil
 * map). Anything unknown is rejected so a typo never silently does something
 * else.
 */
import { OverthereError } from '@overthere/core';

/** One command of a job, as the job manager runs it. */
export interface CommandRequest {
  /** Run by `bash -c`. */
  commandLine: string;
  /** Added to the agent's environment. */
  environment: Record<string, string>;
  /** Where the command starts; default the agent's working directory. */
  workingDirectory?: string;
  /** Run in a container of this image instead of on the host. */
  container?: { image: string };
}

/** A job: commands run one after another until the first failure. */
export interface JobRequest {
  commands: CommandRequest[];
}

/** Most commands in one job. */
export const MAX_COMMANDS = 256;
/** Linux refuses a single argv string longer than this (MAX_ARG_STRLEN, with its NUL). */
export const MAX_COMMAND_LINE_BYTES = 128 * 1024 - 1;

const JOB_FIELDS = ['CommandLine', 'Commands', 'Environment', 'WorkingDirectory', 'Container'];
const COMMAND_FIELDS = ['CommandLine', 'Environment', 'WorkingDirectory', 'Container'];
const CONTAINER_FIELDS = ['Image'];

function invalid(message: string): never {
  throw new OverthereError('INVALID_ARGUMENT', message);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The known fields of an object, keyed by their canonical names; null values
 * are left out. Unknown or duplicated (differing only in case) fields are errors.
 */
function fieldsOf(value: unknown, where: string, known: readonly string[]): Map<string, unknown> {
  if (!isPlainObject(value)) invalid(`${where} must be a JSON object`);
  const fields = new Map<string, unknown>();
  const seen = new Set<string>();
  for (const [key, item] of Object.entries(value)) {
    const name = known.find((candidate) => candidate.toLowerCase() === key.toLowerCase());
    if (name === undefined) {
      invalid(
        `unknown field ${JSON.stringify(key)} in ${where}; known fields: ${known.join(', ')}`,
      );
    }
    if (seen.has(name)) invalid(`field ${name} appears more than once in ${where}`);
    seen.add(name);
    if (item !== null) fields.set(name, item);
  }
  return fields;
}

function noNul(value: string, where: string): string {
  if (value.includes('\0')) invalid(`${where} must not contain NUL characters`);
  return value;
}

function commandLineOf(value: unknown, where: string): string {
  if (value === undefined) invalid(`${where} is required: the bash command to run`);
  if (typeof value !== 'string') invalid(`${where} must be a string`);
  if (value.trim().length === 0) invalid(`${where} must not be empty`);
  if (Buffer.byteLength(value) > MAX_COMMAND_LINE_BYTES) {
    invalid(`${where} is longer than ${MAX_COMMAND_LINE_BYTES} bytes, the limit for one argument`);
  }
  return noNul(value, where);
}

function environmentOf(value: unknown, where: string): Record<string, string> {
  if (value === undefined) return {};
  if (!isPlainObject(value)) invalid(`${where} must be an object of strings`);
  const entries: [string, string][] = [];
  for (const [name, item] of Object.entries(value)) {
    if (typeof item !== 'string') invalid(`${where}.${name} must be a string`);
    if (name.length === 0) invalid(`${where} has an empty variable name`);
    if (name.includes('=')) invalid(`${where} variable name ${JSON.stringify(name)} contains '='`);
    noNul(name, `${where} variable names`);
    entries.push([name, noNul(item, `${where}.${name}`)]);
  }
  // fromEntries defines own properties, so a key like "__proto__" stays a plain variable.
  return Object.fromEntries(entries);
}

function workingDirectoryOf(value: unknown, where: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') invalid(`${where} must be a string`);
  if (value.length === 0) invalid(`${where} must not be empty`);
  return noNul(value, where);
}

function containerOf(value: unknown, where: string): { image: string } | undefined {
  if (value === undefined) return undefined;
  const fields = fieldsOf(value, where, CONTAINER_FIELDS);
  const image = fields.get('Image');
  if (typeof image !== 'string' || image.trim().length === 0) {
    invalid(`${where}.Image must be a non-empty string naming the image`);
  }
  return { image: noNul(image, `${where}.Image`) };
}

function commandOf(
  fields: Map<string, unknown>,
  where: string,
  defaults: { environment: Record<string, string>; workingDirectory: string | undefined },
): CommandRequest {
  const command: CommandRequest = {
    commandLine: commandLineOf(fields.get('CommandLine'), `${where}CommandLine`),
    environment: {
      ...defaults.environment,
      ...environmentOf(fields.get('Environment'), `${where}Environment`),
    },
  };
  const workingDirectory =
    workingDirectoryOf(fields.get('WorkingDirectory'), `${where}WorkingDirectory`) ??
    defaults.workingDirectory;
  if (workingDirectory !== undefined) command.workingDirectory = workingDirectory;
  const container = containerOf(fields.get('Container'), `${where}Container`);
  if (container !== undefined) command.container = container;
  return command;
}

/**
 * Check a parsed `POST /` body. Either `CommandLine` (one command) or
 * `Commands` (a sequence); with `Commands`, a top-level `Environment` and
 * `WorkingDirectory` are defaults for every command (a command's own
 * Environment is merged over the job's).
 *
 * @throws OverthereError `INVALID_ARGUMENT` with a message naming the field.
 */
export function parseJobRequest(body: unknown): JobRequest {
  const fields = fieldsOf(body, 'the request body', JOB_FIELDS);
  const commands = fields.get('Commands');
  if (commands === undefined) {
    if (!fields.has('CommandLine')) {
      invalid('CommandLine is required (or Commands, a list of commands to run in order)');
    }
    return { commands: [commandOf(fields, '', { environment: {}, workingDirectory: undefined })] };
  }
  if (fields.has('CommandLine')) invalid('give either CommandLine or Commands, not both');
  if (fields.has('Container')) {
    invalid('with Commands, Container goes on each command that runs in a container');
  }
  if (!Array.isArray(commands)) invalid('Commands must be a list of commands');
  if (commands.length === 0) invalid('Commands must not be empty');
  if (commands.length > MAX_COMMANDS) invalid(`Commands has more than ${MAX_COMMANDS} commands`);
  const defaults = {
    environment: environmentOf(fields.get('Environment'), 'Environment'),
    workingDirectory: workingDirectoryOf(fields.get('WorkingDirectory'), 'WorkingDirectory'),
  };
  return {
    commands: commands.map((item: unknown, index) =>
      commandOf(
        fieldsOf(item, `Commands[${index}]`, COMMAND_FIELDS),
        `Commands[${index}].`,
        defaults,
      ),
    ),
  };
}

/**
 * Parse the raw body of `POST /` (whatever its Content-Type: the original
 * accepted `curl -d` bodies, which curl labels as a form).
 */
export function parseJobRequestBody(raw: Buffer | string | undefined): JobRequest {
  const text = raw === undefined ? '' : raw.toString();
  if (text.trim().length === 0) {
    invalid('the request body is empty: send a JSON object with CommandLine (or Commands)');
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    invalid(`the request body is not valid JSON: ${(error as Error).message}`);
  }
  return parseJobRequest(body);
}
