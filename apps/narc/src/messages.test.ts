import { describe, expect, it } from 'vitest';
import { forwardSubject, parseAdvertise, parseStart, parseStop } from './messages.js';

const bytes = (value: unknown): Uint8Array =>
  new TextEncoder().encode(typeof value === 'string' ? value : JSON.stringify(value));

describe('parseStart', () => {
  it('takes the task and token; limits are optional megabytes; unknown fields are ignored', () => {
    expect(parseStart(bytes({ task: 'a1', secure_token: 's', extra: true }))).toEqual({
      ok: true,
      value: { task: 'a1', secure_token: 's' },
    });
    expect(
      parseStart(bytes({ task: 'a1', secure_token: 's', memory_limit: 64, disk_limit: 8 })),
    ).toEqual({
      ok: true,
      value: { task: 'a1', secure_token: 's', memory_limit: 64, disk_limit: 8 },
    });
    expect(parseStart(bytes({ task: 'a1', secure_token: 's', memory_limit: null }))).toEqual({
      ok: true,
      value: { task: 'a1', secure_token: 's' },
    });
  });

  it.each([
    ['not JSON', 'nope', /not JSON/],
    ['an array', [1], /object/],
    ['no task', { secure_token: 's' }, /task must be a string/],
    ['a task id with a slash', { task: 'a/b', secure_token: 's' }, /task must be/],
    ['a task id with a leading dot', { task: '.a', secure_token: 's' }, /task must be/],
    ['no token', { task: 'a' }, /secure_token/],
    ['an empty token', { task: 'a', secure_token: '' }, /secure_token/],
    ['a negative limit', { task: 'a', secure_token: 's', memory_limit: -1 }, /memory_limit/],
    ['a zero limit', { task: 'a', secure_token: 's', disk_limit: 0 }, /disk_limit/],
    ['a fractional limit', { task: 'a', secure_token: 's', disk_limit: 1.5 }, /disk_limit/],
    ['a limit as text', { task: 'a', secure_token: 's', memory_limit: '64' }, /memory_limit/],
    ['a huge limit', { task: 'a', secure_token: 's', memory_limit: 2 ** 40 }, /too large/],
  ])('refuses %s, without quoting the token', (_name, payload, reason) => {
    const parsed = parseStart(bytes(payload));
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) {
      expect(parsed.reason).toMatch(reason);
      expect(parsed.reason).not.toContain('"s"');
    }
  });
});

describe('parseStop and parseAdvertise', () => {
  it('reads a stop and refuses a bad one', () => {
    expect(parseStop(bytes({ task: 't-1' }))).toEqual({ ok: true, value: { task: 't-1' } });
    expect(parseStop(bytes({ task: 1 })).ok).toBe(false);
    expect(parseStop(bytes('x')).ok).toBe(false);
  });

  it('reads an advert', () => {
    const advert = { id: 'a', available_memory: 10, available_disk: 20 };
    expect(parseAdvertise(bytes(advert))).toEqual({ ok: true, value: advert });
    expect(parseAdvertise(bytes({ id: 'a' })).ok).toBe(false);
  });

  it('forwards to a per-agent subject', () => {
    expect(forwardSubject('agent-1')).toBe('narc.agent.agent-1.start');
  });
});
