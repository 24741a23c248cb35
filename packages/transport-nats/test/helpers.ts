/**
 * Test fixtures: nats-server processes on free loopback ports (alone, with
 * auth, with JetStream, or as a cluster), a TCP proxy whose connections a test
 * can cut, and waiting for a condition with a bound.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

/** The shared nats-server of `scripts/services.sh` (JetStream on). */
export const SHARED_NATS = 'nats://127.0.0.1:4222';

export { freePort, startNatsServer } from '../../../test-support/nats-server.js';
export type { NatsServerOptions, NatsServerProcess } from '../../../test-support/nats-server.js';

/** A TCP proxy to `target`; `drop()` cuts every connection through it (as a network failure would). */
export async function startProxy(
  target: number,
): Promise<{ url: string; drop(): void; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((inbound) => {
    const outbound = connect(target, '127.0.0.1');
    sockets.add(inbound);
    sockets.add(outbound);
    const forget = (): void => {
      inbound.destroy();
      outbound.destroy();
      sockets.delete(inbound);
      sockets.delete(outbound);
    };
    inbound.on('error', forget).on('close', forget);
    outbound.on('error', forget).on('close', forget);
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  const drop = (): void => {
    for (const socket of sockets) socket.destroy();
    sockets.clear();
  };
  return {
    url: `nats://127.0.0.1:${address.port}`,
    drop,
    async close() {
      drop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Poll `check` every `everyMs` until it returns something other than undefined, or fail after `withinMs`. */
export async function eventually<T>(
  check: () => Promise<T | undefined> | T | undefined,
  withinMs: number,
  what: string,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${withinMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
