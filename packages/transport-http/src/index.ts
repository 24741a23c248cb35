export {
  createHttpServer,
  errorBody,
  httpStatusOf,
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
