/**
 * The bits of Go's formats the original levity's command lines and logs used:
 * `time.ParseDuration` for `-t 5s`, `time.Duration.String()` for help
 * defaults, and the `log` package's line prefix.
 */

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parse a Go duration (`300ms`, `5s`, `1m30s`, `1.5h`, `-2s`, `0`) into
 * milliseconds. A number needs a unit (except `0`), as in Go.
 *
 * @throws Error `time: invalid duration "…"` (Go's wording) or `time: missing unit in duration "…"`.
 */
export function parseGoDuration(text: string): number {
  const quoted = JSON.stringify(text);
  let body = text;
  let sign = 1;
  if (body.startsWith('-') || body.startsWith('+')) {
    if (body.startsWith('-')) sign = -1;
    body = body.slice(1);
  }
  if (body === '0') return 0;
  if (body === '') throw new Error(`time: invalid duration ${quoted}`);
  const part = /(\d+(?:\.\d*)?|\.\d+)([a-zµμ]*)/y;
  let total = 0;
  let index = 0;
  while (index < body.length) {
    part.lastIndex = index;
    const match = part.exec(body);
    if (!match) throw new Error(`time: invalid duration ${quoted}`);
    const unit = match[2] as string;
    if (unit === '') throw new Error(`time: missing unit in duration ${quoted}`);
    const scale = DURATION_UNITS[unit];
    if (scale === undefined)
      throw new Error(`time: unknown unit ${JSON.stringify(unit)} in duration ${quoted}`);
    total += Number(match[1]) * scale;
    index = part.lastIndex;
  }
  if (!Number.isFinite(total)) throw new Error(`time: invalid duration ${quoted}`);
  return sign * total;
}

/** Go's `time.Duration.String()` for whole milliseconds and up: `5s`, `1m30s`, `500ms`, `24h0m0s`. */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return '0s';
  const sign = ms < 0 ? '-' : '';
  let rest = Math.abs(ms);
  if (rest < 1_000) return `${sign}${rest}ms`;
  const hours = Math.floor(rest / 3_600_000);
  rest -= hours * 3_600_000;
  const minutes = Math.floor(rest / 60_000);
  rest -= minutes * 60_000;
  const seconds = `${Number((rest / 1_000).toFixed(3))}s`;
  if (hours > 0) return `${sign}${hours}h${minutes}m${seconds}`;
  if (minutes > 0) return `${sign}${minutes}m${seconds}`;
  return `${sign}${seconds}`;
}

const pad = (value: number) => String(value).padStart(2, '0');

/** The prefix Go's `log` package puts on a line: `2006/01/02 15:04:05 ` in local time. */
export function goLogPrefix(date: Date = new Date()): string {
  return (
    `${date.getFullYear()}/${pad(date.getMonth() + 1)}/${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())} `
  );
}
