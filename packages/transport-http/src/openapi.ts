/**
 * The OpenAPI 3.1 document of the `/v1` protocol, served at
 * `GET /v1/openapi.json`. Request body schemas are the very objects the server
 * validates with, so the document describes what is really accepted.
 */
import { componentSchemas } from './wire-schemas.js';

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: unknown) => ({ 'application/json': { schema } });
const errorResponse = (description: string) => ({
  description,
  content: json(ref('Error')),
});

const idParameter = {
  name: 'id',
  in: 'path',
  required: true,
  schema: { type: 'string', maxLength: 256 },
  description: 'Task id.',
};

const common = {
  '400': errorResponse('INVALID_ARGUMENT: malformed JSON, unknown field, wrong type, bad query.'),
  '401': errorResponse('UNAUTHENTICATED: missing or wrong bearer token.'),
};
const withTask = { ...common, '404': errorResponse('NOT_FOUND: no such task.') };
const noContent = { description: 'Done.' };
/** Output and attach also take the token as `?access_token=` (browsers set no headers there). */
const tokenOrQuery = [{ bearer: [] }, { accessToken: [] }];
const taskResponse = (description: string) => ({ description, content: json(ref('Task')) });

/** The OpenAPI 3.1 document. `version` is the package version shown in `info`. */
export function createOpenApiDocument(version: string): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: {
      title: 'overthere /v1',
      version,
      description:
        'Run commands on an overthere agent: create tasks, follow their output, attach a console. See docs/http-protocol.md.',
    },
    security: [{ bearer: [] }],
    paths: {
      '/v1/tasks': {
        post: {
          operationId: 'createTask',
          summary: 'Start a task (with wait=1: and answer once it is final).',
          parameters: [
            {
              name: 'wait',
              in: 'query',
              description:
                'Answer once the task is final, or at the timeout, with the task as it is then.',
              schema: { type: 'boolean', default: false },
            },
            {
              name: 'timeoutMs',
              in: 'query',
              description: 'Bound on the wait (needs wait=1).',
              schema: { type: 'integer', minimum: 0, maximum: 300000, default: 30000 },
            },
          ],
          requestBody: { required: true, content: json(ref('CreateTaskRequest')) },
          responses: {
            '201': {
              ...taskResponse('Started (with wait=1: final, unless the timeout came first).'),
              headers: { Location: { schema: { type: 'string' } } },
            },
            ...common,
            '404': errorResponse('NOT_FOUND: no such sandbox.'),
            '409': errorResponse('CONFLICT: the id is taken.'),
            '413': errorResponse('PAYLOAD_TOO_LARGE: body over the limit.'),
            '422': errorResponse('SPAWN_FAILED: missing binary, bad cwd; nothing is registered.'),
            '429': errorResponse('RESOURCE_EXHAUSTED: task limit or capacity reached.'),
            '501': errorResponse('UNSUPPORTED: the runtime lacks something the spec asks for.'),
          },
        },
        get: {
          operationId: 'listTasks',
          summary: 'List tasks, oldest first.',
          parameters: [
            {
              name: 'state',
              in: 'query',
              schema: { type: 'string' },
              description: 'Comma-separated states, e.g. `running,backoff` (repeatable).',
            },
            {
              name: 'label',
              in: 'query',
              schema: { type: 'array', items: { type: 'string' } },
              style: 'form',
              explode: true,
              description: '`key=value`; every label given must match (repeatable).',
            },
          ],
          responses: {
            '200': {
              description: 'Matching tasks.',
              content: json({
                type: 'object',
                properties: { tasks: { type: 'array', items: ref('Task') } },
                required: ['tasks'],
              }),
            },
            ...common,
          },
        },
      },
      '/v1/tasks/{id}': {
        parameters: [idParameter],
        get: {
          operationId: 'getTask',
          responses: { '200': taskResponse('The task.'), ...withTask },
        },
        delete: {
          operationId: 'removeTask',
          summary: 'Stop the task with its kill policy if live, then forget it and its output.',
          responses: { '204': noContent, ...withTask },
        },
      },
      '/v1/tasks/{id}/wait': {
        parameters: [idParameter],
        get: {
          operationId: 'waitTask',
          parameters: [
            {
              name: 'timeoutMs',
              in: 'query',
              schema: { type: 'integer', minimum: 0, maximum: 300000, default: 30000 },
            },
          ],
          responses: {
            '200': taskResponse('The task is final.'),
            '202': taskResponse('Still live at the timeout (or the server is shutting down).'),
            ...withTask,
          },
        },
      },
      '/v1/tasks/{id}/signal': {
        parameters: [idParameter],
        post: {
          operationId: 'signalTask',
          summary: "Signal the task's process group.",
          requestBody: { required: true, content: json(ref('SignalRequest')) },
          responses: {
            '204': noContent,
            ...withTask,
            '412': errorResponse('FAILED_PRECONDITION: the task is not running.'),
          },
        },
      },
      '/v1/tasks/{id}/stop': {
        parameters: [idParameter],
        post: {
          operationId: 'stopTask',
          summary: 'Stop for good: signal, then SIGKILL after the grace period; no restart.',
          requestBody: { required: false, content: json(ref('StopRequest')) },
          responses: {
            '200': taskResponse('The task is final (with `wait: true`, or it already was).'),
            '202': taskResponse('The stop has begun.'),
            ...withTask,
          },
        },
      },
      '/v1/tasks/{id}/stdin': {
        parameters: [idParameter],
        post: {
          operationId: 'writeStdin',
          summary: "Write raw bytes to the task's stdin (any content type is taken as bytes).",
          parameters: [
            {
              name: 'eof',
              in: 'query',
              schema: { type: 'string', enum: ['1', 'true', '0', 'false'] },
              description: 'Close stdin after writing.',
            },
          ],
          requestBody: {
            required: false,
            content: {
              'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
            },
          },
          responses: {
            '204': noContent,
            ...withTask,
            '412': errorResponse(
              'FAILED_PRECONDITION: no stdin pipe, stdin closed, or not running.',
            ),
            '413': errorResponse('PAYLOAD_TOO_LARGE: body over the limit.'),
          },
        },
      },
      '/v1/tasks/{id}/resize': {
        parameters: [idParameter],
        post: {
          operationId: 'resizeTask',
          requestBody: { required: true, content: json(ref('ResizeRequest')) },
          responses: {
            '204': noContent,
            ...withTask,
            '412': errorResponse('FAILED_PRECONDITION: the task is not running.'),
            '501': errorResponse('UNSUPPORTED: the task has no TTY.'),
          },
        },
      },
      '/v1/tasks/{id}/output': {
        parameters: [idParameter],
        get: {
          operationId: 'taskOutput',
          security: tokenOrQuery,
          summary:
            'Replay output from a cursor, and with `follow` keep streaming until the task is final.',
          parameters: [
            {
              name: 'stream',
              in: 'query',
              schema: { type: 'string', enum: ['stdout', 'stderr', 'both'] },
            },
            { name: 'cursor', in: 'query', schema: { type: 'integer', minimum: 0 } },
            {
              name: 'offset',
              in: 'query',
              schema: { type: 'integer', minimum: 0 },
              description: 'First byte offset to send; needs a single `stream` and no `cursor`.',
            },
            {
              name: 'follow',
              in: 'query',
              schema: { type: 'string', enum: ['1', 'true', '0', 'false'] },
            },
            {
              name: 'format',
              in: 'query',
              schema: { type: 'string', enum: ['raw', 'ndjson', 'sse'] },
            },
            {
              name: 'Last-Event-ID',
              in: 'header',
              schema: { type: 'string' },
              description: 'SSE: resume after this seq.',
            },
          ],
          responses: {
            '200': {
              description: 'The output stream.',
              headers: {
                'X-Overthere-Cursor': {
                  schema: { type: 'integer' },
                  description: 'First seq that will be sent (absent with `offset`).',
                },
              },
              content: {
                'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
                'application/x-ndjson': { schema: ref('OutputEvent') },
                'text/event-stream': { schema: { type: 'string' } },
              },
            },
            ...withTask,
          },
        },
      },
      '/v1/tasks/{id}/attach': {
        parameters: [idParameter],
        get: {
          operationId: 'attachTask',
          security: tokenOrQuery,
          summary:
            'WebSocket: binary output messages `[stream 1|2][u64 BE seq][data]`, JSON control messages; see docs/http-protocol.md.',
          parameters: [
            {
              name: 'stream',
              in: 'query',
              schema: { type: 'string', enum: ['stdout', 'stderr', 'both'] },
            },
            { name: 'cursor', in: 'query', schema: { type: 'integer', minimum: 0 } },
          ],
          responses: {
            '101': { description: 'Switching protocols.' },
            '426': errorResponse('Not a WebSocket upgrade.'),
            ...withTask,
          },
        },
      },
      '/v1/capacity': {
        get: {
          operationId: 'capacity',
          responses: {
            '200': { description: 'What is left.', content: json(ref('Capacity')) },
            ...common,
          },
        },
      },
      '/v1/runtime': {
        get: {
          operationId: 'runtime',
          summary: "The default runtime's id and capabilities, and every runtime of the agent.",
          responses: {
            '200': { description: 'The runtimes.', content: json(ref('RuntimeInfo')) },
            ...common,
            '501': errorResponse('UNSUPPORTED: the agent was not told its runtimes.'),
          },
        },
      },
      '/v1/openapi.json': {
        get: {
          operationId: 'openapi',
          responses: {
            '200': { description: 'This document.', content: json({ type: 'object' }) },
          },
        },
      },
      '/healthz': {
        get: {
          operationId: 'health',
          security: [],
          responses: {
            '200': {
              description: 'Alive.',
              content: json({
                type: 'object',
                properties: { status: { type: 'string', enum: ['ok'] } },
              }),
            },
          },
        },
      },
      '/metrics': {
        get: {
          operationId: 'metrics',
          responses: {
            '200': {
              description: 'Prometheus text format.',
              content: { 'text/plain': { schema: { type: 'string' } } },
            },
            '401': common['401'],
          },
        },
      },
    },
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer' },
        accessToken: {
          type: 'apiKey',
          in: 'query',
          name: 'access_token',
          description:
            'The bearer token, for browsers (EventSource, WebSocket). Output and attach only.',
        },
      },
      schemas: componentSchemas,
    },
  };
}
