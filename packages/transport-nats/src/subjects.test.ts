import { describe, expect, it } from 'vitest';
import { OverthereError } from '@overthere/core';
import { checkPrefix, checkToken, createSubjects, taskToken } from './subjects.js';

describe('subjects', () => {
  it('keeps plain task ids and encodes others so no two ids share a token', () => {
    expect(taskToken('abc-DEF_123')).toBe('abc-DEF_123');
    const dotted = taskToken('a.b');
    expect(dotted).toMatch(/^~[A-Za-z0-9_-]+$/);
    expect(dotted).not.toBe(taskToken('a_b'));
    expect(taskToken('~x')).not.toBe('~x');
    expect(Buffer.from(dotted.slice(1), 'base64url').toString()).toBe('a.b');
  });

  it('names every subject under the prefix', () => {
    const subjects = createSubjects('team.pool');
    expect(subjects.create).toBe('team.pool.create');
    expect(subjects.agent('a1', 'output')).toBe('team.pool.agent.a1.output');
    expect(subjects.taskOutput('t.1')).toBe(`team.pool.task.${taskToken('t.1')}.output`);
    expect(subjects.taskAll('t1')).toBe('team.pool.task.t1.>');
    expect(createSubjects().advertise).toBe('overthere.advertise');
  });

  it('refuses agent ids and prefixes that are not subject tokens', () => {
    for (const bad of ['', 'a.b', 'a b', '*', '>', 'x'.repeat(129)]) {
      expect(() => checkToken(bad, 'agentId')).toThrow(OverthereError);
    }
    for (const bad of ['', '.a', 'a.', 'a..b', 'a.*', 'a b']) {
      expect(() => checkPrefix(bad)).toThrow(/subjectPrefix/);
    }
  });
});
