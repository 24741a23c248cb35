/**
 * What the original lacked, opt-in so the wire stays the same: a token in
 * the metadata, TLS and mutual TLS (certificates made by `openssl` here), and
 * no listening beyond loopback without one of them or an explicit --insecure.
 */
import { readFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  UUID,
  handle,
  levity,
  makePki,
  protoClient,
  runLevityd,
  startLevityd,
  stopAllDaemons,
  tempDir,
  waitFor,
  type TestPki,
} from './helpers.js';

let temp: { dir: string; remove(): Promise<void> };
let pki: TestPki;

beforeAll(async () => {
  temp = await tempDir('levity-security-');
  pki = await makePki(temp.dir);
});

afterAll(async () => {
  await stopAllDaemons();
  await temp?.remove();
});

const UNAUTHENTICATED =
  /^levity: GRPC request failed: rpc error: code = Unauthenticated desc = missing or wrong token\n$/;

describe.concurrent('security', () => {
  it('refuses calls without the token, or with a wrong one', async () => {
    // Every interface: a token is enough to be allowed there (clients come through loopback).
    const daemon = await startLevityd([], { LEVITY_TOKEN: 's3cret' }, '0.0.0.0:0');
    expect(daemon.stderr()).toMatch(/Listening on 0\.0\.0\.0:\d+\n/);
    const [wrong, good] = await Promise.all([
      levity(['-a', daemon.address, '--token', 'nope', 'start', 'true'], {
        LEVITY_TOKEN: 's3cret',
      }),
      levity(['-a', daemon.address, 'start', 'true'], { LEVITY_TOKEN: 's3cret' }),
    ]);
    expect(wrong).toMatchObject({ code: 1, stdout: '' });
    expect(wrong.stderr).toMatch(UNAUTHENTICATED);
    expect(good).toMatchObject({ code: 0, stderr: '' });
    const id = good.stdout.trim();
    expect(id).toMatch(UUID);

    // Every method, streaming included, from a client generated from the .proto.
    for (const token of [undefined, 'nope', 's3cret ', 'S3CRET']) {
      const client = protoClient(daemon.address, token === undefined ? {} : { token });
      try {
        for (const call of [
          client.queryTask,
          client.signalTask,
          client.fetchLogs,
          client.followLogs,
        ]) {
          await expect(call(handle(id))).rejects.toMatchObject({
            code: grpc.status.UNAUTHENTICATED,
          });
        }
        await expect(client.startTask({ binary: 'true' })).rejects.toMatchObject({
          code: grpc.status.UNAUTHENTICATED,
        });
      } finally {
        client.close();
      }
    }
    const client = protoClient(daemon.address, { token: 's3cret' });
    try {
      expect((await client.queryTask(handle(id))).status_code).toMatch(/Running|Finished/);
    } finally {
      client.close();
    }
    // Token over plaintext beyond loopback: allowed, with a warning; the token itself is never printed.
    await waitFor('the plaintext warning', () =>
      /warning: the token travels in plaintext/.test(daemon.stderr()) ? true : undefined,
    );
    expect(daemon.stderr()).not.toContain('s3cret');
  });

  it('will not listen beyond loopback without auth, unless told --insecure', async () => {
    const [anyV4, every] = await Promise.all([runLevityd(['0.0.0.0:0']), runLevityd([':0'])]);
    for (const result of [anyV4, every]) {
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(
        /^levityd: refusing to listen on .* without authentication.*--insecure.*\n$/,
      );
    }
    const [insecure, token, mutual] = await Promise.all([
      startLevityd(['--insecure'], {}, '0.0.0.0:0'),
      startLevityd(['--token', 't'], {}, '0.0.0.0:0'),
      startLevityd(
        [
          '--tls-cert',
          pki.serverCert,
          '--tls-key',
          pki.serverKey,
          '--tls-client-ca',
          pki.clientCaCert,
        ],
        {},
        '0.0.0.0:0',
      ),
    ]);
    for (const daemon of [insecure, token, mutual]) {
      expect(daemon.stderr()).toMatch(/Listening on 0\.0\.0\.0:\d+\n/);
    }
    // Token over plaintext beyond loopback: allowed, with a warning.
    await waitFor('the plaintext warning', () =>
      /warning: the token travels in plaintext/.test(token.stderr()) ? true : undefined,
    );
    expect(await levity(['-a', insecure.address, 'start', 'true'])).toMatchObject({ code: 0 });
    await Promise.all([insecure.stop(), token.stop()]);
  });

  it('serves TLS: a client that checks against the CA gets in, plaintext and unknown CAs do not', async () => {
    const daemon = await startLevityd(['--tls-cert', pki.serverCert, '--tls-key', pki.serverKey]);
    await waitFor('the TLS line', () =>
      /Serving requests \(TLS, /.test(daemon.stderr()) ? true : undefined,
    );
    const [good, plain, systemRoots] = await Promise.all([
      levity(['-a', daemon.address, '--ca', pki.caCert, 'start', 'echo', 'over tls']),
      levity(['-a', daemon.address, 'start', 'true']),
      levity(['-a', daemon.address, '--tls', 'start', 'true']),
    ]);
    expect(good).toMatchObject({ code: 0, stderr: '' });
    expect(plain).toMatchObject({ code: 1, stdout: '' });
    expect(plain.stderr).toMatch(
      /^levity: GRPC request failed: rpc error: code = Unavailable desc = [^\n]*\n$/,
    );
    expect(systemRoots).toMatchObject({ code: 1, stdout: '' });
    expect(systemRoots.stderr).toMatch(
      /^levity: GRPC request failed: rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake failed: [^\n]*certificate[^\n]*"\n$/,
    );

    const id = good.stdout.trim();
    const client = protoClient(`localhost:${daemon.port}`, {
      credentials: grpc.credentials.createSsl(await readFile(pki.caCert)),
    });
    try {
      await expect(client.queryTask(handle(id))).resolves.toHaveProperty('status_code');
    } finally {
      client.close();
    }
    expect(
      await levity(['-a', `localhost:${daemon.port}`, '--ca', pki.caCert, 'logs', id]),
    ).toMatchObject({
      code: 0,
      stdout: 'over tls\n',
    });
  });

  it('serves mutual TLS: only clients with a certificate from the client CA get in', async () => {
    const daemon = await startLevityd([
      '--tls-cert',
      pki.serverCert,
      '--tls-key',
      pki.serverKey,
      '--tls-client-ca',
      pki.clientCaCert,
    ]);
    await waitFor('the mutual TLS line', () =>
      /Serving requests \(mutual TLS, /.test(daemon.stderr()) ? true : undefined,
    );
    const tls = ['-a', daemon.address, '--ca', pki.caCert];
    const [noCert, stranger, good] = await Promise.all([
      levity([...tls, 'start', 'true']),
      levity([...tls, '--cert', pki.strangerCert, '--key', pki.strangerKey, 'start', 'true']),
      levity([...tls, '--cert', pki.clientCert, '--key', pki.clientKey, 'start', 'true']),
    ]);
    for (const refused of [noCert, stranger]) {
      expect(refused).toMatchObject({ code: 1, stdout: '' });
      expect(refused.stderr).toMatch(
        /^levity: GRPC request failed: rpc error: code = Unavailable desc = [^\n]*\n$/,
      );
    }
    expect(good).toMatchObject({ code: 0, stderr: '' });
    expect(good.stdout.trim()).toMatch(UUID);
  });
});
