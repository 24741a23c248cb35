import { describe, expect, it } from 'vitest';
import { formatGoDuration, goLogPrefix, parseGoDuration } from './go-format.js';

describe('Go formats', () => {
  it('parses durations as time.ParseDuration', () => {
    expect(parseGoDuration('5s')).toBe(5_000);
    expect(parseGoDuration('500ms')).toBe(500);
    expect(parseGoDuration('1m')).toBe(60_000);
    expect(parseGoDuration('1m30s')).toBe(90_000);
    expect(parseGoDuration('1.5h')).toBe(5_400_000);
    expect(parseGoDuration('.5s')).toBe(500);
    expect(parseGoDuration('250us')).toBeCloseTo(0.25);
    expect(parseGoDuration('0')).toBe(0);
    expect(parseGoDuration('-2s')).toBe(-2_000);
    expect(parseGoDuration('+2s')).toBe(2_000);
    expect(() => parseGoDuration('5')).toThrow('time: missing unit in duration "5"');
    expect(() => parseGoDuration('')).toThrow('time: invalid duration ""');
    expect(() => parseGoDuration('soon')).toThrow('time: invalid duration "soon"');
    expect(() => parseGoDuration('5d')).toThrow('time: unknown unit "d" in duration "5d"');
    expect(() => parseGoDuration('5s ')).toThrow('time: invalid duration "5s "');
  });

  it('prints durations as time.Duration.String()', () => {
    expect(formatGoDuration(0)).toBe('0s');
    expect(formatGoDuration(500)).toBe('500ms');
    expect(formatGoDuration(5_000)).toBe('5s');
    expect(formatGoDuration(1_500)).toBe('1.5s');
    expect(formatGoDuration(90_000)).toBe('1m30s');
    expect(formatGoDuration(86_400_000)).toBe('24h0m0s');
  });

  it('prefixes log lines as Go’s log package', () => {
    expect(goLogPrefix(new Date(2024, 0, 2, 3, 4, 5))).toBe('2024/01/02 03:04:05 ');
  });
});
