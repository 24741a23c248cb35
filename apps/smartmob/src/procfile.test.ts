import { describe, expect, it } from 'vitest';
import { parseProcfile, ProcfileError } from './procfile.js';

function problemsOf(content: string): readonly string[] {
  try {
    parseProcfile(content);
  } catch (error) {
    if (error instanceof ProcfileError) return error.problems;
    throw error;
  }
  throw new Error('expected a ProcfileError');
}

describe('parseProcfile', () => {
  it('reads types, commands and env K=V prefixes as the smartmob procfile package did', () => {
    const procfile = parseProcfile(
      [
        'web: bundle exec rails server -p $PORT',
        'worker: env QUEUE=* bundle exec rake resque:work',
        'urgentworker: env QUEUE=urgent FOO=meh bundle exec rake resque:work',
      ].join('\n'),
    );
    expect([...procfile.keys()]).toEqual(['web', 'worker', 'urgentworker']);
    expect(procfile.get('web')).toEqual({
      command: 'bundle exec rails server -p $PORT',
      env: {},
      line: 1,
    });
    expect(procfile.get('worker')?.env).toEqual({ QUEUE: '*' });
    expect(procfile.get('urgentworker')).toEqual({
      command: 'bundle exec rake resque:work',
      env: { QUEUE: 'urgent', FOO: 'meh' },
      line: 3,
    });
  });

  it('joins a line ending in a backslash with the next, without its leading blanks', () => {
    const procfile = parseProcfile(
      'web: python -m http.server \\\n    --bind 127.0.0.1 \\\n  $PORT\nother: true\n',
    );
    expect(procfile.get('web')?.command).toBe('python -m http.server --bind 127.0.0.1 $PORT');
    expect(procfile.get('other')?.line).toBe(4);
  });

  it('keeps a value with = in it, and a command with --flag=value after the variables', () => {
    const procfile = parseProcfile('web: env URL=http://x/?a=b A=1 ./run --mode=fast');
    expect(procfile.get('web')).toMatchObject({
      command: './run --mode=fast',
      env: { URL: 'http://x/?a=b', A: '1' },
    });
  });

  it('treats a bare `env` command as the command, and skips blank and comment lines', () => {
    const procfile = parseProcfile(
      '\n# the web process\n\nshow: env\nrun:   env   -i FOO=1 sh\r\n',
    );
    expect(procfile.get('show')?.command).toBe('env');
    expect(procfile.get('run')).toMatchObject({ command: 'env   -i FOO=1 sh', env: {} });
  });

  it('rejects a duplicate process type with both line numbers', () => {
    expect(
      problemsOf(['web: bundle exec rails server -p $PORT', 'web: bundle exec rake'].join('\n')),
    ).toEqual(['Line 2: duplicate process type "web": already appears on line 1.']);
  });

  it('rejects a variable given twice for one process type', () => {
    expect(
      problemsOf(['web: run', 'worker: env QUEUE=* QUEUE=urgent bundle exec rake'].join('\n')),
    ).toEqual(['Line 2: duplicate variable "QUEUE" for process type "worker".']);
  });

  it('reports every malformed line: no colon, no type, no command', () => {
    expect(problemsOf('just a command\n: nothing\nweb:\nok: fine\nenvonly: env A=1')).toEqual([
      'Line 1: invalid Procfile line "just a command": want "type: command".',
      'Line 2: invalid Procfile line ": nothing": want "type: command".',
      'Line 3: process type "web" has no command.',
      'Line 5: process type "envonly" has no command.',
    ]);
  });
});
