/**
 * @overthere/transport-http: serve an overthere Supervisor over HTTP (the `/v1`
 * API of docs/http-protocol.md), and a client and remote runtime for it.
 */
export {
  ACCESS_TOKEN_PARAMETER,
  createHttpServer,
  errorBody,
  httpStatusOf,
  queryAccessToken,
  shutdownSignal,
  startHttpServer,
  toHttpError,
} from './http-server.js';
export type {
  HttpServerOptions,
  HttpTlsOptions,
  StartHttpServerOptions,
  StartedHttpServer,
} from './http-server.js';
export { requireBearerToken } from './bearer-auth.js';
export type { BearerAuthOptions } from './bearer-auth.js';
export { overthereApi, registerOverthereApi } from './overthere-api.js';
export type { OverthereApiOptions } from './overthere-api.js';
export { createHttpAgent } from './http-agent.js';
export type { HttpAgent, HttpAgentOptions } from './http-agent.js';
export { createHttpClient } from './http-client.js';
export type {
  HttpAttachEvent,
  HttpAttachOptions,
  HttpAttachment,
  HttpClient,
  HttpClientOptions,
  HttpOutputOptions,
  RemoteRuntimeInfo,
} from './http-client.js';
export { createRemoteRuntime } from './remote-runtime.js';
export type { RemoteRuntimeClient, RemoteRuntimeOptions } from './remote-runtime.js';
export { createOpenApiDocument } from './openapi.js';
export { ATTACH_HEADER_BYTES, decodeAttachFrame, encodeAttachFrame } from './wire-format.js';
export type {
  HttpOutputEnd,
  HttpOutputEvent,
  HttpOutputFrame,
  HttpOutputGap,
} from './wire-format.js';
