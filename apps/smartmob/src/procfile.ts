/**
 * Procfiles as the smartmob project defined them (smartmob RFC 1, the
 * `procfile` Python package): one `type: [env K=V …] command` per line, a
 * line ending in `\` continued on the next, blank lines ignored. A process
 * type given twice, or a variable given twice for one type, is an error
 * (there is no sane default).
 */

/** One process type of a Procfile. */
export interface ProcfileEntry {
  /** The command line, run by a shell. */
  command: string;
  /** Variables from `env K=V …`, in the order given. */
  env: Record<string, string>;
  /** 1-based line the entry starts on. */
  line: number;
}

/** A parsed Procfile: entries by process type. */
export type Procfile = ReadonlyMap<string, ProcfileEntry>;

/** A Procfile that cannot be used; `problems` has one message per problem, with line numbers. */
export class ProcfileError extends Error {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(problems.join(' '));
    this.name = 'ProcfileError';
    this.problems = problems;
  }
}

/** `NAME=VALUE` after `env`: a shell variable name, then a value without whitespace. */
const ASSIGNMENT = /^([A-Za-z_][A-Za-z0-9_]*)=(\S+)(?:\s+|$)/;

/** Logical lines: `\` at the end of a line joins the next one (its leading blanks dropped). */
function logicalLines(content: string): { line: number; text: string }[] {
  const result: { line: number; text: string }[] = [];
  let start = 0;
  let group: string[] = [];
  const physical = content.split(/\r?\n/);
  physical.forEach((raw, index) => {
    const text = group.length > 0 ? raw.trimStart() : raw;
    const trimmed = text.trimEnd();
    if (trimmed.endsWith('\\')) {
      group.push(trimmed.slice(0, -1));
      return;
    }
    group.push(text);
    result.push({ line: start + 1, text: group.join('') });
    start = index + 1;
    group = [];
  });
  // A continuation on the very last line has nothing to join.
  if (group.length > 0) result.push({ line: start + 1, text: group.join('') });
  return result;
}

interface ParsedLine {
  line: number;
  type: string;
  command: string;
  variables: [string, string][];
}

function parseLine(line: number, text: string): ParsedLine | string {
  const colon = text.indexOf(':');
  const type = colon === -1 ? '' : text.slice(0, colon).trim();
  if (colon === -1 || type === '' || /\s/.test(type)) {
    return `Line ${line}: invalid Procfile line ${JSON.stringify(text.trim())}: want "type: command".`;
  }
  let rest = text.slice(colon + 1).trim();
  const variables: [string, string][] = [];
  const envPrefix = /^env\s+/.exec(rest);
  if (envPrefix) {
    let remaining = rest.slice(envPrefix[0].length);
    for (
      let match = ASSIGNMENT.exec(remaining);
      match !== null;
      match = ASSIGNMENT.exec(remaining)
    ) {
      variables.push([match[1] as string, match[2] as string]);
      remaining = remaining.slice(match[0].length);
    }
    // `env` without assignments is the command `env` itself.
    if (variables.length > 0) rest = remaining;
  }
  if (rest === '') {
    return `Line ${line}: process type "${type}" has no command.`;
  }
  return { line, type, command: rest, variables };
}

/**
 * Parse a Procfile's text.
 *
 * @throws ProcfileError listing every problem: malformed lines, duplicate
 * process types, duplicate variables.
 */
export function parseProcfile(content: string): Procfile {
  const problems: string[] = [];
  const entries = new Map<string, ProcfileEntry>();
  for (const { line, text } of logicalLines(content)) {
    const trimmed = text.trim();
    // Comments are not in the RFC, but Procfiles in the wild carry them.
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const parsed = parseLine(line, text);
    if (typeof parsed === 'string') {
      problems.push(parsed);
      continue;
    }
    const earlier = entries.get(parsed.type);
    if (earlier !== undefined) {
      problems.push(
        `Line ${line}: duplicate process type "${parsed.type}": already appears on line ${earlier.line}.`,
      );
      continue;
    }
    const env: Record<string, string> = {};
    for (const [name, value] of parsed.variables) {
      if (Object.hasOwn(env, name)) {
        problems.push(
          `Line ${line}: duplicate variable "${name}" for process type "${parsed.type}".`,
        );
      }
      env[name] = value;
    }
    entries.set(parsed.type, { command: parsed.command, env, line });
  }
  if (problems.length > 0) throw new ProcfileError(problems);
  return entries;
}
