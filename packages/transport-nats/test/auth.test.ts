// Auth and TLS are nats.js's: the agent and the client pass them through.
// A token, an nkey and TLS with a private CA each let the right client in;
// a wrong credential is UNAUTHENTICATED on the call, and plain TCP to a TLS
// server is UNAVAILABLE.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { createUser } from '@nats-io/nkeys';
import { OverthereError, createMemoryRuntime, createSupervisor } from '@overthere/core';
import {
  createNatsAgent,
  createNatsClient,
  type NatsAgentOptions,
  type NatsClientOptions,
} from '@overthere/transport-nats';
import { startNatsServer } from './helpers.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

/** An agent with `agentOptions`, and the outcome of one call by a client with `clientOptions`. */
async function roundTrip(
  agentOptions: Omit<NatsAgentOptions, 'supervisor'>,
  clients: Omit<NatsClientOptions, 'agent'>[],
): Promise<unknown[]> {
  const runtime = createMemoryRuntime();
  const supervisor = await createSupervisor({ runtime });
  const agent = await createNatsAgent({
    ...agentOptions,
    supervisor,
    runtime,
    capacityBucket: false,
  });
  cleanups.push(async () => {
    await agent.close();
    await supervisor.close();
  });
  const outcomes: unknown[] = [];
  for (const options of clients) {
    const client = createNatsClient({ ...options, agent: agent.agentId, capacityBucket: false });
    cleanups.push(() => client.close());
    outcomes.push(
      await client.create({ command: ['exit', '0'] }).then(
        (task) => task.state,
        (error: unknown) => error,
      ),
    );
  }
  return outcomes;
}

const code = (value: unknown): string | undefined =>
  OverthereError.is(value) ? value.code : undefined;

describe('auth and TLS, passed through', () => {
  it('token', async () => {
    const token = `token-${randomUUID()}`;
    const server = await startNatsServer({ args: ['--auth', token] });
    cleanups.push(() => server.stop());
    const [right, wrong, none] = await roundTrip({ servers: server.url, token }, [
      { servers: server.url, token },
      { servers: server.url, token: 'wrong' },
      { servers: server.url },
    ]);
    expect(right).toBe('running');
    expect(code(wrong)).toBe('UNAUTHENTICATED');
    expect(code(none)).toBe('UNAUTHENTICATED');
  });

  it('nkey', async () => {
    const user = createUser();
    const stranger = createUser();
    const dir = await mkdtemp(join(tmpdir(), 'overthere-nats-auth-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const config = join(dir, 'server.conf');
    await writeFile(config, `authorization { users = [ { nkey: "${user.getPublicKey()}" } ] }\n`);
    const server = await startNatsServer({ args: ['-c', config] });
    cleanups.push(() => server.stop());
    const seed = user.getSeed();
    const [right, wrong] = await roundTrip({ servers: server.url, nkeySeed: seed }, [
      { servers: server.url, nkeySeed: new TextDecoder().decode(seed) },
      { servers: server.url, nkeySeed: stranger.getSeed() },
    ]);
    expect(right).toBe('running');
    expect(code(wrong)).toBe('UNAUTHENTICATED');
  });

  it('TLS with a private CA', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'overthere-nats-tls-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    await promisify(execFile)('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout',
      key,
      '-out',
      cert,
    ]);
    const server = await startNatsServer({ args: ['--tls', '--tlscert', cert, '--tlskey', key] });
    cleanups.push(() => server.stop());
    const tls = { caFile: cert };
    const [right, plain] = await roundTrip({ servers: server.url, tls }, [
      { servers: server.url, tls },
      { servers: server.url, connectionOptions: { tls: null } },
    ]);
    expect(right).toBe('running');
    expect(code(plain)).toBe('UNAVAILABLE');
  });
});
