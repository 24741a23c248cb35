import { OverthereError } from './errors.js';

/** Signals a task may be sent, by their POSIX names. */
export const SIGNAL_NUMBERS = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGCHLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGURG: 23,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGVTALRM: 26,
  SIGPROF: 27,
  SIGWINCH: 28,
  SIGIO: 29,
  SIGPWR: 30,
  SIGSYS: 31,
} as const;

/** A POSIX signal name such as `SIGTERM`. */
export type SignalName = keyof typeof SIGNAL_NUMBERS;

/**
 * Accepts `SIGTERM`, `TERM`, `term` or a Linux signal number (`15`) and returns
 * the canonical name; anything else is `INVALID_ARGUMENT`.
 */
export function parseSignal(value: string | number): SignalName {
  if (typeof value === 'number' || /^\d+$/.test(value)) {
    const number = Number(value);
    for (const [name, n] of Object.entries(SIGNAL_NUMBERS)) {
      if (n === number) return name as SignalName;
    }
  } else {
    const upper = value.toUpperCase();
    const name = upper.startsWith('SIG') ? upper : `SIG${upper}`;
    if (name in SIGNAL_NUMBERS) return name as SignalName;
  }
  throw new OverthereError('INVALID_ARGUMENT', `unknown signal: ${String(value)}`);
}

/** True when `value` names a known signal. */
export function isSignalName(value: unknown): value is SignalName {
  return typeof value === 'string' && value in SIGNAL_NUMBERS;
}
