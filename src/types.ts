// Shapes shared by the proxy plumbing and the view engine.
import type { Dispatcher } from 'undici';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';

/** A request classified as kube-apiserver's RequestInfoResolver does. */
export interface RequestInfo {
  isResourceRequest: boolean;
  /** Lower-case verb: get, list, watch, create, update, patch, delete, deletecollection, proxy; for non-resource requests the HTTP method. */
  verb: string;
  apiPrefix: string; // "api" | "apis" | "" for non-resource
  apiGroup: string; // "" for core
  apiVersion: string;
  namespace: string;
  resource: string; // plural, e.g. "endpointslices"
  subresource: string;
  name: string;
  path: string;
}

/** The apiserver poolview talks to. */
export interface Upstream {
  /** Base URL, e.g. https://10.0.0.1:6443 (no trailing slash). */
  readonly url: URL;
  /** For clients' requests: trusts the cluster CA, presents no credentials of its own. */
  readonly clientDispatcher: Dispatcher;
  /** For poolview's own requests (scope sources, proxy-identity): presents poolview's client certificate if any. */
  readonly ownDispatcher: Dispatcher;
  /** Headers with poolview's own credentials (Authorization bearer token), possibly empty. */
  ownHeaders(): Record<string, string>;
}

/** Everything a handler needs to take over one classified client request. */
export interface InterceptContext {
  req: IncomingMessage;
  res: ServerResponse;
  info: RequestInfo;
  /** User-Agent lower-cased and cut at the first '/'; undefined when there is no User-Agent. */
  component: string | undefined;
  upstream: Upstream;
  /** Dispatcher + extra headers to use for forwarding *this* request (the anonymous-requests policy already applied). */
  forwardVia: { dispatcher: Dispatcher; headers: Record<string, string> };
  log: Logger;
}

/** Takes over a request when it returns true; false = the proxy forwards it unchanged. */
export type Interceptor = (ctx: InterceptContext) => Promise<boolean> | boolean;
