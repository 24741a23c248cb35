import { describe, expect, it } from 'vitest';
import type { TaskSpec } from '@overthere/core';
import {
  argvOf,
  checkLimits,
  dockerOptionsOf,
  environmentOf,
  exitStatusOf,
  pullPolicyOf,
} from './spec-options.js';

describe('dockerOptionsOf', () => {
  it('reads the known options and rejects unknown or malformed ones', () => {
    expect(dockerOptionsOf(undefined)).toEqual({});
    expect(
      dockerOptionsOf({
        docker: { image: 'busybox', pull: 'always', network: 'bridge', keep: true },
      }),
    ).toEqual({ image: 'busybox', pull: 'always', network: 'bridge', keep: true });
    expect(() => dockerOptionsOf({ docker: { privileged: true } })).toThrow(/privileged/);
    expect(() => dockerOptionsOf({ docker: { image: '' } })).toThrow(/image/);
    expect(() => dockerOptionsOf({ docker: { pull: 'sometimes' } })).toThrow(/pull/);
    expect(() => dockerOptionsOf({ docker: { keep: 'yes' } })).toThrow(/keep/);
  });

  it('maps pull booleans onto policies', () => {
    expect(pullPolicyOf(true, 'never')).toBe('missing');
    expect(pullPolicyOf(false, 'always')).toBe('never');
    expect(pullPolicyOf(undefined, 'always')).toBe('always');
  });
});

describe('argvOf', () => {
  it('runs a command as given, a plain script with /bin/sh -c, a #! script from a file', () => {
    expect(argvOf({ command: ['echo', 'a b'] })).toEqual(['echo', 'a b']);
    expect(argvOf({ script: 'echo hi' })).toEqual(['/bin/sh', '-c', 'echo hi']);
    const shebang = argvOf({ script: '#!/usr/bin/env python3\nprint(1)\n' });
    expect(shebang.slice(0, 2)).toEqual(['/bin/sh', '-c']);
    expect(shebang.at(-1)).toBe('#!/usr/bin/env python3\nprint(1)\n');
  });

  it('refuses an empty command with SPAWN_FAILED and bad specs with INVALID_ARGUMENT', () => {
    const codeOf = (spec: TaskSpec): unknown => {
      try {
        argvOf(spec);
      } catch (error) {
        return (error as { code?: unknown }).code;
      }
      return undefined;
    };
    expect(codeOf({ command: [] })).toBe('SPAWN_FAILED');
    expect(codeOf({})).toBe('INVALID_ARGUMENT');
    expect(codeOf({ command: ['a'], script: 'b' })).toBe('INVALID_ARGUMENT');
    expect(() => argvOf({ command: ['a\0b'] })).toThrow(/NUL/);
  });
});

describe('environmentOf', () => {
  it('layers spec.env over the base, and drops the base with inheritEnv false', () => {
    const base = { A: 'base', B: 'base' };
    expect(environmentOf(base, { env: { B: 'spec' } }, { X: '1' })).toEqual([
      'A=base',
      'B=spec',
      'X=1',
    ]);
    expect(environmentOf(base, { env: { C: 'c' }, inheritEnv: false }, {})).toEqual(['C=c']);
    expect(() => environmentOf({}, { env: { 'A=B': 'x' } }, {})).toThrow(/not valid/);
  });
});

describe('checkLimits', () => {
  it('accepts positive limits and refuses the rest', () => {
    expect(checkLimits({ memoryBytes: 64 * 1024 * 1024, cpus: 0.5, pids: 10 })).toEqual({
      memoryBytes: 64 * 1024 * 1024,
      cpus: 0.5,
      pids: 10,
    });
    expect(() => checkLimits({ pids: 0 })).toThrow(/pids/);
    expect(() => checkLimits({ pids: 1.5 })).toThrow(/integer/);
    expect(() => checkLimits({ memoryBytes: 1024 })).toThrow(/6 MiB/);
  });
});

describe('exitStatusOf', () => {
  it('reports 128+n as signalled only for a signal the runtime sent', () => {
    expect(exitStatusOf(0, false, new Set())).toEqual({ code: 0, signal: null, reason: 'exited' });
    expect(exitStatusOf(143, false, new Set(['SIGTERM']))).toEqual({
      code: null,
      signal: 'SIGTERM',
      reason: 'signalled',
    });
    expect(exitStatusOf(143, false, new Set())).toEqual({
      code: 143,
      signal: null,
      reason: 'exited',
    });
    expect(exitStatusOf(137, true, new Set())).toEqual({
      code: null,
      signal: 'SIGKILL',
      reason: 'oom',
    });
  });
});
