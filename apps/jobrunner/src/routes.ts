/**
 * The jobrunner HTTP dialect: the original's four routes (`GET /`, `POST /`,
 * `GET /:ID/attach`, `DELETE /:ID`) plus `GET /:ID`, on the shared overthere
 * fastify server (limits, `{code, message}` errors, shutdown signal).
 */
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { OverthereError, type Logger } from '@overthere/core';
import { requireBearerToken, shutdownSignal } from '@overthere/transport-http';
import { parseJobRequestBody } from './job-request.js';
import type { Job, JobManager } from './jobs.js';

/** Options for {@link installJobrunnerApi}. */
export interface JobrunnerApiOptions {
  jobs: JobManager;
  /** When set, every request needs `Authorization: Bearer <token>`. */
  token: string | undefined;
  logger: Logger;
}

interface IdParams {
  ID: string;
}

/** A job as `GET /:ID` shows it. Environment values are not echoed: they may be secrets. */
export function jobJson(job: Job): Record<string, unknown> {
  return {
    ID: job.id,
    State: job.state,
    ExitCode: job.exitCode,
    CreatedAt: job.createdAt,
    EndedAt: job.endedAt,
    Commands: job.commands.map((command) => ({
      CommandLine: command.request.commandLine,
      WorkingDirectory: command.request.workingDirectory ?? null,
      Container:
        command.request.container === undefined ? null : { Image: command.request.container.image },
      State: command.state,
      ExitCode: command.exitCode,
      Signal: command.signal,
      Error: command.error,
      StartedAt: command.startedAt,
      EndedAt: command.endedAt,
    })),
  };
}

/** Write a chunk, waiting for the client to take it when it is slow. */
async function writeChunk(
  response: ServerResponse,
  chunk: Buffer,
  signal: AbortSignal,
): Promise<void> {
  if (response.write(chunk)) return;
  await once(response, 'drain', { signal });
}

/**
 * Add the jobrunner routes to a server made by `createHttpServer`. They own
 * the server's body parsing: `POST /` reads its body as JSON whatever the
 * Content-Type (clients of the original send `curl -d`, a form type).
 */
export function installJobrunnerApi(server: FastifyInstance, options: JobrunnerApiOptions): void {
  const { jobs, token, logger } = options;

  server.removeAllContentTypeParsers();
  server.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => {
    done(null, body);
  });

  requireBearerToken(server, { token, realm: 'jobrunner' });

  function findJob(id: string): Job {
    const job = jobs.find(id);
    if (job === undefined) {
      throw new OverthereError('NOT_FOUND', `no such job: ${id}`, { details: { jobId: id } });
    }
    return job;
  }

  server.get('/', () => ({ IDs: jobs.running() }));

  server.post('/', async (request) => {
    const job = await jobs.start(parseJobRequestBody(request.body as Buffer | undefined));
    return { ID: job.id };
  });

  server.get<{ Params: IdParams }>('/:ID', (request) => jobJson(findJob(request.params.ID)));

  server.delete<{ Params: IdParams }>('/:ID', async (request, reply) => {
    // The original answered 200 whatever the id; so do we.
    await jobs.delete(request.params.ID);
    return reply.code(200).send();
  });

  server.get<{ Params: IdParams }>(
    '/:ID/attach',
    // A HEAD would run the whole stream only to throw it away.
    { exposeHeadRoute: false },
    async (request, reply) => {
      const job = findJob(request.params.ID);
      reply.hijack();
      const response = reply.raw;
      const gone = new AbortController();
      response.on('close', () => gone.abort());
      response.on('error', () => gone.abort());
      const signal = AbortSignal.any([gone.signal, shutdownSignal(server)]);
      response.writeHead(200, {
        'content-type': 'application/octet-stream',
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
        // Ask reverse proxies not to buffer the stream.
        'x-accel-buffering': 'no',
      });
      // The client learns at once that it is attached, even before any output.
      response.flushHeaders();
      let outcome: string;
      try {
        outcome = await jobs.streamOutput(
          job,
          (chunk) => writeChunk(response, chunk, signal),
          signal,
        );
      } catch (error) {
        outcome = 'failed';
        if (!signal.aborted) logger.warn({ err: error, jobId: job.id }, 'attach stream failed');
      }
      // A clean end means "that was all of it"; anything else is cut so the client can tell.
      if (outcome === 'complete') response.end();
      else response.destroy();
    },
  );
}
