/**
 * A small command-line flag parser in the manner of spf13/pflag, which the
 * original levity and levityd used (through cobra): `--name value`,
 * `--name=value`, `-n value`, `-nvalue`, `-n=value`, booleans as `--name`,
 * `--name=false` or grouped (`-fh`); `--` ends the flags. Flags may come
 * between positional arguments; the caller decides where flags stop.
 */

/** What a flag holds. */
export type FlagKind = 'string' | 'bool' | 'duration' | 'stringArray';

/** One flag. */
export interface FlagSpec {
  /** Long name (`address` for `--address`). */
  name: string;
  /** One-letter name (`a` for `-a`). */
  short?: string;
  /** Other long names accepted for it. */
  aliases?: readonly string[];
  kind: FlagKind;
  /** Help text. */
  usage: string;
  /** Shown as `(default …)` in the help. */
  defaultText?: string;
}

/** A command line that cannot be used. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Values seen so far, by long name; arrays keep every occurrence. */
export class FlagValues {
  private readonly values = new Map<string, string[]>();

  add(name: string, value: string): void {
    const list = this.values.get(name);
    if (list) list.push(value);
    else this.values.set(name, [value]);
  }

  /** The last value given, if any. */
  last(name: string): string | undefined {
    return this.values.get(name)?.at(-1);
  }

  /** Every value given, in order. */
  all(name: string): string[] {
    return [...(this.values.get(name) ?? [])];
  }

  has(name: string): boolean {
    return this.values.has(name);
  }

  /** A boolean flag's value (false when absent). */
  bool(name: string): boolean {
    return this.last(name) === 'true';
  }
}

function parseBool(flag: string, value: string): string {
  if (/^(1|t|true|TRUE|True)$/.test(value)) return 'true';
  if (/^(0|f|false|FALSE|False)$/.test(value)) return 'false';
  throw new UsageError(
    `invalid argument ${JSON.stringify(value)} for "${flag}" flag: strconv.ParseBool: parsing ${JSON.stringify(value)}: invalid syntax`,
  );
}

/** `-a, --address` as pflag names a flag in messages. */
export function flagLabel(flag: FlagSpec): string {
  return flag.short === undefined ? `--${flag.name}` : `-${flag.short}, --${flag.name}`;
}

/**
 * Parse the flag at `args[index]` (which starts with `-` and is not `-` or
 * `--`) against `flags`, recording into `values`. Returns the index of the
 * next argument.
 */
export function parseFlag(
  args: readonly string[],
  index: number,
  flags: readonly FlagSpec[],
  values: FlagValues,
): number {
  const arg = args[index] as string;
  if (arg.startsWith('--')) {
    const body = arg.slice(2);
    const equals = body.indexOf('=');
    const name = equals === -1 ? body : body.slice(0, equals);
    if (name === '' || name.startsWith('-') || name.startsWith('=')) {
      throw new UsageError(`bad flag syntax: ${arg}`);
    }
    const flag = flags.find(
      (candidate) => candidate.name === name || candidate.aliases?.includes(name),
    );
    if (!flag) throw new UsageError(`unknown flag: --${name}`);
    if (flag.kind === 'bool') {
      values.add(
        flag.name,
        equals === -1 ? 'true' : parseBool(flagLabel(flag), body.slice(equals + 1)),
      );
      return index + 1;
    }
    if (equals !== -1) {
      values.add(flag.name, body.slice(equals + 1));
      return index + 1;
    }
    const next = args[index + 1];
    if (next === undefined) throw new UsageError(`flag needs an argument: --${name}`);
    values.add(flag.name, next);
    return index + 2;
  }
  // Shorthands: -abc is -a -b -c while they are booleans; a value-taking one
  // takes the rest (`-dDIR`, `-d=DIR`) or the next argument.
  let rest = arg.slice(1);
  while (rest.length > 0) {
    const letter = rest[0] as string;
    const flag = flags.find((candidate) => candidate.short === letter);
    if (!flag) throw new UsageError(`unknown shorthand flag: '${letter}' in ${arg}`);
    rest = rest.slice(1);
    if (flag.kind === 'bool') {
      if (rest.startsWith('=')) {
        values.add(flag.name, parseBool(flagLabel(flag), rest.slice(1)));
        return index + 1;
      }
      values.add(flag.name, 'true');
      continue;
    }
    if (rest.length > 0) {
      values.add(flag.name, rest.startsWith('=') ? rest.slice(1) : rest);
      return index + 1;
    }
    const next = args[index + 1];
    if (next === undefined) throw new UsageError(`flag needs an argument: '${letter}' in ${arg}`);
    values.add(flag.name, next);
    return index + 2;
  }
  return index + 1;
}

/** True when `arg` is a flag (not a positional, not `--`). */
export function isFlag(arg: string): boolean {
  return arg.startsWith('-') && arg !== '-' && arg !== '--';
}

const TYPE_NAMES: Record<FlagKind, string> = {
  string: 'string',
  bool: '',
  duration: 'duration',
  stringArray: 'stringArray',
};

/** Flags listed as pflag's `FlagUsages` does, sorted by name, aligned. */
export function formatFlags(flags: readonly FlagSpec[]): string {
  const sorted = [...flags].sort((a, b) => a.name.localeCompare(b.name));
  const heads = sorted.map((flag) => {
    const names =
      flag.short === undefined ? `      --${flag.name}` : `  -${flag.short}, --${flag.name}`;
    const type = TYPE_NAMES[flag.kind];
    return type === '' ? names : `${names} ${type}`;
  });
  const width = Math.max(...heads.map((head) => head.length));
  return sorted
    .map((flag, index) => {
      const head = (heads[index] as string).padEnd(width);
      const usage =
        flag.defaultText === undefined ? flag.usage : `${flag.usage} (default ${flag.defaultText})`;
      return `${head}   ${usage}\n`;
    })
    .join('');
}
