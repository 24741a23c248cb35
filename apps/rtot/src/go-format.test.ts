import { describe, expect, it } from 'vitest';
import {
  GO_ZERO_TIME,
  formatGoDuration,
  formatGoTime,
  formatGoTimeNanos,
  goExitText,
  parseGoDuration,
} from './go-format.js';

describe('formatGoTimeNanos (time.Time.String in UTC)', () => {
  it('prints all nine fraction digits when they are significant', () => {
    const nanos = BigInt(Date.UTC(2014, 0, 12, 3, 42, 32)) * 1_000_000n + 314_152_969n;
    expect(formatGoTimeNanos(nanos)).toBe('2014-01-12 03:42:32.314152969 +0000 UTC');
  });

  it('drops trailing zeros of the fraction, as the .999999999 layout does', () => {
    const base = BigInt(Date.UTC(2014, 0, 12, 3, 46, 38)) * 1_000_000n;
    expect(formatGoTimeNanos(base + 297_295_600n)).toBe('2014-01-12 03:46:38.2972956 +0000 UTC');
    expect(formatGoTimeNanos(base + 500_000_000n)).toBe('2014-01-12 03:46:38.5 +0000 UTC');
    expect(formatGoTimeNanos(base + 1n)).toBe('2014-01-12 03:46:38.000000001 +0000 UTC');
  });

  it('prints no fraction at all on a whole second', () => {
    const nanos = BigInt(Date.UTC(2024, 1, 29, 23, 59, 59)) * 1_000_000n;
    expect(formatGoTimeNanos(nanos)).toBe('2024-02-29 23:59:59 +0000 UTC');
  });

  it('pads the year to four digits', () => {
    const date = new Date(0);
    date.setUTCFullYear(1, 0, 1);
    expect(formatGoTimeNanos(BigInt(date.getTime()) * 1_000_000n)).toBe(GO_ZERO_TIME);
  });

  it('handles instants before the epoch', () => {
    expect(formatGoTimeNanos(-1n)).toBe('1969-12-31 23:59:59.999999999 +0000 UTC');
  });
});

describe('formatGoTime (ISO strings from the supervisor)', () => {
  it('converts millisecond ISO times', () => {
    expect(formatGoTime('2014-01-12T03:42:32.314Z')).toBe('2014-01-12 03:42:32.314 +0000 UTC');
    expect(formatGoTime('2014-01-12T03:42:32.000Z')).toBe('2014-01-12 03:42:32 +0000 UTC');
  });

  it('is the zero time for a time that has not happened', () => {
    expect(formatGoTime(undefined)).toBe('0001-01-01 00:00:00 +0000 UTC');
    expect(formatGoTime('not a time')).toBe(GO_ZERO_TIME);
  });
});

describe('formatGoDuration (time.Duration.String)', () => {
  it.each([
    [0n, '0s'],
    [1n, '1ns'],
    [999n, '999ns'],
    [1_000n, '1µs'],
    [1_500n, '1.5µs'],
    [1_000_000n, '1ms'],
    [12_345_678n, '12.345678ms'],
    [1_000_000_000n, '1s'],
    [1_345_340_158n, '1.345340158s'],
    [61_000_000_000n, '1m1s'],
    [3_600_000_000_000n, '1h0m0s'],
    [3_723_500_000_000n, '1h2m3.5s'],
    [-1_500_000_000n, '-1.5s'],
  ])('%s ns is %s', (nanos, text) => {
    expect(formatGoDuration(nanos)).toBe(text);
  });
});

describe('parseGoDuration', () => {
  it.each([
    ['0', 0],
    ['24h', 86_400_000],
    ['90m', 5_400_000],
    ['1h30m', 5_400_000],
    ['1.5h', 5_400_000],
    ['30s', 30_000],
    ['500ms', 500],
    ['250us', 0.25],
    ['1m0.5s', 60_500],
  ])('%s is %d ms', (text, ms) => {
    expect(parseGoDuration(text)).toBe(ms);
  });

  it.each(['', '10', 'h', '1d', '-1s', '1h-5m', 'forever', '1 s'])('rejects %j', (text) => {
    expect(() => parseGoDuration(text)).toThrow(/invalid duration/);
  });

  it('forgives surrounding blanks (values from env files)', () => {
    expect(parseGoDuration(' 1s\n')).toBe(1000);
  });
});

describe('goExitText (exec.ExitError strings)', () => {
  it('is undefined for a clean exit', () => {
    expect(goExitText(0, null)).toBeUndefined();
  });

  it('gives the exit status for a non-zero code', () => {
    expect(goExitText(1, null)).toBe('exit status 1');
    expect(goExitText(127, null)).toBe('exit status 127');
  });

  it("names signals as Go's syscall package does", () => {
    expect(goExitText(null, 'SIGKILL')).toBe('signal: killed');
    expect(goExitText(null, 'SIGTERM')).toBe('signal: terminated');
    expect(goExitText(null, 'SIGINT')).toBe('signal: interrupt');
    expect(goExitText(null, 'SIGSEGV')).toBe('signal: segmentation fault');
    expect(goExitText(null, 'HUP')).toBe('signal: hangup');
  });

  it('falls back to the name of a signal Go has no text for', () => {
    expect(goExitText(null, 'SIGRTMIN')).toBe('signal: SIGRTMIN');
  });
});
