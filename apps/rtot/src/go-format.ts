/**
 * Go's text forms that the rtot wire carries: `time.Time.String()` for job
 * times, `time.Duration.String()` for the ping uptime and for duration flags,
 * and the `*exec.ExitError` strings (`exit status 1`, `signal: killed`).
 */

/** Go's zero `time.Time`, printed in UTC: what a job shows for a time that has not happened. */
export const GO_ZERO_TIME = '0001-01-01 00:00:00 +0000 UTC';

const NANOS_PER_MS = 1_000_000n;

function pad(value: number, width: number): string {
  return String(value).padStart(width, '0');
}

/**
 * A UTC instant as Go's `time.Time.String()` prints it (layout
 * `2006-01-02 15:04:05.999999999 -0700 MST`): the fraction has up to nine
 * digits with trailing zeros dropped, and none at all on a whole second.
 *
 * @param epochNanos nanoseconds since the Unix epoch
 */
export function formatGoTimeNanos(epochNanos: bigint): string {
  let millis = epochNanos / NANOS_PER_MS;
  let subMillis = epochNanos % NANOS_PER_MS;
  if (subMillis < 0n) {
    subMillis += NANOS_PER_MS;
    millis -= 1n;
  }
  const date = new Date(Number(millis));
  const fractionNanos = BigInt(date.getUTCMilliseconds()) * NANOS_PER_MS + subMillis;
  const fraction =
    fractionNanos === 0n ? '' : `.${fractionNanos.toString().padStart(9, '0').replace(/0+$/, '')}`;
  return (
    `${pad(date.getUTCFullYear(), 4)}-${pad(date.getUTCMonth() + 1, 2)}-${pad(date.getUTCDate(), 2)} ` +
    `${pad(date.getUTCHours(), 2)}:${pad(date.getUTCMinutes(), 2)}:${pad(date.getUTCSeconds(), 2)}` +
    `${fraction} +0000 UTC`
  );
}

/**
 * An ISO 8601 time (as the supervisor records them) in Go's `time.Time.String()`
 * form; undefined or unparsable is Go's zero time.
 */
export function formatGoTime(iso: string | undefined): string {
  if (iso === undefined) return GO_ZERO_TIME;
  const millis = Date.parse(iso);
  if (Number.isNaN(millis)) return GO_ZERO_TIME;
  return formatGoTimeNanos(BigInt(millis) * NANOS_PER_MS);
}

/** `whole` and `fraction` of `value / unit`, the fraction without trailing zeros (Go's fmtFrac). */
function splitUnit(value: bigint, unit: bigint, digits: number): [bigint, string] {
  const whole = value / unit;
  const rest = value % unit;
  if (rest === 0n) return [whole, ''];
  return [whole, `.${rest.toString().padStart(digits, '0').replace(/0+$/, '')}`];
}

/**
 * A duration as Go's `time.Duration.String()` prints it: `0s`, `250ns`,
 * `1.5µs`, `12.345ms`, `3.000000001s`, `2m5s`, `1h0m0s`.
 */
export function formatGoDuration(nanos: bigint): string {
  if (nanos === 0n) return '0s';
  const sign = nanos < 0n ? '-' : '';
  const value = nanos < 0n ? -nanos : nanos;
  if (value < 1_000n) return `${sign}${value}ns`;
  if (value < 1_000_000n) {
    const [whole, fraction] = splitUnit(value, 1_000n, 3);
    return `${sign}${whole}${fraction}µs`;
  }
  if (value < 1_000_000_000n) {
    const [whole, fraction] = splitUnit(value, 1_000_000n, 6);
    return `${sign}${whole}${fraction}ms`;
  }
  const [totalSeconds, fraction] = splitUnit(value, 1_000_000_000n, 9);
  const hours = totalSeconds / 3600n;
  const minutes = (totalSeconds % 3600n) / 60n;
  const seconds = totalSeconds % 60n;
  let text = `${seconds}${fraction}s`;
  if (hours > 0n || minutes > 0n) text = `${minutes}m${text}`;
  if (hours > 0n) text = `${hours}h${text}`;
  return `${sign}${text}`;
}

const DURATION_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parse a Go duration (`time.ParseDuration`: `90s`, `1h30m`, `1.5h`, `500ms`,
 * `0`) into milliseconds. Throws on anything else, including a bare number
 * other than 0 and negative durations (no flag here means one).
 */
export function parseGoDuration(text: string): number {
  const input = text.trim();
  if (input === '0' || input === '+0') return 0;
  const body = input.startsWith('+') ? input.slice(1) : input;
  const part = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;
  let total = 0;
  let index = 0;
  while (index < body.length) {
    part.lastIndex = index;
    const match = part.exec(body);
    if (!match) break;
    total += Number(match[1]) * (DURATION_UNITS[match[2] as string] as number);
    index = part.lastIndex;
  }
  if (body.length === 0 || index !== body.length || !Number.isFinite(total)) {
    throw new Error(`invalid duration ${JSON.stringify(text)} (examples: 24h, 90m, 30s, 0)`);
  }
  return total;
}

/** Go's `syscall.Signal.String()` for Linux signals, by name. */
const GO_SIGNAL_TEXT: Readonly<Record<string, string>> = {
  SIGHUP: 'hangup',
  SIGINT: 'interrupt',
  SIGQUIT: 'quit',
  SIGILL: 'illegal instruction',
  SIGTRAP: 'trace/breakpoint trap',
  SIGABRT: 'aborted',
  SIGBUS: 'bus error',
  SIGFPE: 'floating point exception',
  SIGKILL: 'killed',
  SIGUSR1: 'user defined signal 1',
  SIGSEGV: 'segmentation fault',
  SIGUSR2: 'user defined signal 2',
  SIGPIPE: 'broken pipe',
  SIGALRM: 'alarm clock',
  SIGTERM: 'terminated',
  SIGSTKFLT: 'stack fault',
  SIGCHLD: 'child exited',
  SIGCONT: 'continued',
  SIGSTOP: 'stopped (signal)',
  SIGTSTP: 'stopped',
  SIGTTIN: 'stopped (tty input)',
  SIGTTOU: 'stopped (tty output)',
  SIGURG: 'urgent I/O condition',
  SIGXCPU: 'CPU time limit exceeded',
  SIGXFSZ: 'file size limit exceeded',
  SIGVTALRM: 'virtual timer expired',
  SIGPROF: 'profiling timer expired',
  SIGWINCH: 'window changed',
  SIGIO: 'I/O possible',
  SIGPOLL: 'I/O possible',
  SIGPWR: 'power failure',
  SIGSYS: 'bad system call',
};

/**
 * The text of Go's `*exec.ExitError` for a process that ended badly:
 * `exit status 3`, `signal: killed`. Undefined for a clean exit (Go's nil error).
 */
export function goExitText(code: number | null, signal: string | null): string | undefined {
  if (signal !== null) {
    const name = signal.toUpperCase().startsWith('SIG') ? signal.toUpperCase() : `SIG${signal}`;
    return `signal: ${GO_SIGNAL_TEXT[name] ?? name}`;
  }
  if (code !== null && code !== 0) return `exit status ${code}`;
  return undefined;
}
