import { expect, it } from 'vitest';
import { boundLogger, type Logger } from './logger.js';

/** A logger that records (level, object, message) and whose children record with their bindings. */
function recorder(lines: unknown[][], bindings: Record<string, unknown> = {}): Logger {
  const at =
    (level: string) =>
    (first: Record<string, unknown> | string, message?: string): void => {
      if (typeof first === 'string') lines.push([level, bindings, first]);
      else lines.push([level, { ...bindings, ...first }, message]);
    };
  return {
    trace: at('trace'),
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    fatal: at('fatal'),
    child: (more) => recorder(lines, { ...bindings, ...more }),
  };
}

it('boundLogger logs what a child would, with its bindings merged into each line', () => {
  const viaBound: unknown[][] = [];
  const viaChild: unknown[][] = [];
  for (const [lines, make] of [
    [viaBound, (logger: Logger) => boundLogger(logger, { taskId: 't1' })],
    [viaChild, (logger: Logger) => logger.child({ taskId: 't1' })],
  ] as const) {
    const logger = make(recorder(lines));
    logger.debug({ code: 0 }, 'process exited');
    logger.warn('plain message');
    logger.child({ pid: 42 }).error({ err: 'x', taskId: 'override' }, 'failed');
  }
  expect(viaBound).toEqual(viaChild);
  expect(viaBound).toEqual([
    ['debug', { taskId: 't1', code: 0 }, 'process exited'],
    ['warn', { taskId: 't1' }, 'plain message'],
    ['error', { taskId: 'override', pid: 42, err: 'x' }, 'failed'],
  ]);
});
