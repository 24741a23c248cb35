import { describe, expect, it } from 'vitest';
import { withShebang } from './jobs.js';
import { parseJobId } from './rtot-routes.js';

describe('withShebang', () => {
  it('puts #!/bin/bash in front of a script without a #! line', () => {
    expect(withShebang(Buffer.from('echo hi')).toString()).toBe('#!/bin/bash\necho hi');
    expect(withShebang(Buffer.alloc(0)).toString()).toBe('#!/bin/bash\n');
    // Only the very first bytes count: a blank line first means no shebang.
    expect(withShebang(Buffer.from('\n#!/bin/sh')).toString()).toBe('#!/bin/bash\n\n#!/bin/sh');
    expect(withShebang(Buffer.from('#')).toString()).toBe('#!/bin/bash\n#');
  });

  it('leaves a script that starts with #! byte for byte alone', () => {
    const script = Buffer.from([0x23, 0x21, 0x2f, 0x62, 0x69, 0x6e, 0x2f, 0x73, 0x68, 0x0a, 0xff]);
    expect(withShebang(script)).toBe(script);
  });
});

describe('parseJobId (strconv.Atoi)', () => {
  it.each([
    ['0', 0n],
    ['42', 42n],
    ['+7', 7n],
    ['007', 7n],
    ['-1', -1n],
    ['9223372036854775807', 9_223_372_036_854_775_807n],
    ['-9223372036854775808', -9_223_372_036_854_775_808n],
  ])('reads %j as %s', (text, value) => {
    expect(parseJobId(text)).toBe(value);
  });

  it.each(['', 'abc', '1.5', '0x1', '1e3', ' 1', '1 ', '+', '9223372036854775808'])(
    'rejects %j',
    (text) => {
      expect(parseJobId(text)).toBeNull();
    },
  );
});
