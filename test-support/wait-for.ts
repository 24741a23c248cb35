/**
 * Polling for state outside the test's own events (a file on disk, a process
 * in /proc, a server's view): the one helper every suite uses for that.
 */

/**
 * Call `probe` until it returns something other than undefined or false, and
 * resolve with that; fail after `timeoutMs` saying what was awaited.
 */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10_000,
  intervalMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
