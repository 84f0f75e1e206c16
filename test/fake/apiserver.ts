// In-process fake kube-apiserver with real list/watch semantics, for unit and model tests of the filtering proxy.
//
// Modules: resources.ts (catalogue), store.ts (objects, global RV, history), selectors.ts, render.ts (negotiation and
// serialization), rest.ts (resource handlers, watches), patch.ts, status.ts. This file: server, routing, discovery,
// auth, upgrade tunnels and the public API.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { apiGroups, apiResourceList, preferredApiVersion, RESOURCES_BY_GV, resourceDef } from './resources.js';
import { Rest, type Route } from './rest.js';
import { typedJson } from './render.js';
import { S, StatusError, type Status } from './status.js';
import { itemJson, Store, type Item } from './store.js';

export { StatusError } from './status.js';
export type { Status } from './status.js';

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid: string;
  resourceVersion: string;
  creationTimestamp: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [k: string]: any;
}

export interface KubeObject {
  kind: string;
  apiVersion: string;
  metadata: ObjectMeta;
  [k: string]: any;
}

export interface FakeApiserverOptions {
  /** bearer token -> user name; when set, requests without a known token get 401 Status JSON. */
  tokens?: Record<string, string>;
  /** Periodic BOOKMARK on watches with allowWatchBookmarks=true (default 60000; 0 = never). */
  bookmarkIntervalMs?: number;
  /** gzip responses at least this big when the client sends Accept-Encoding: gzip (default: off). Watches are never gzipped. */
  gzipMinBytes?: number;
  /** Default 0 (ephemeral); always 127.0.0.1. */
  port?: number;
  /** Events retained for watch resumption / Exact lists (default 10000). Older RVs get 410 Expired. */
  historySize?: number;
  /** How long a request for an RV newer than the current one waits before 504 ResourceVersionTooLarge (default 500). */
  tooLargeWaitMs?: number;
  /** SelfSubjectAccessReviews answer allowed: false for these bearer tokens (default: every review is allowed). */
  deniedTokens?: string[];
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
}

export interface FakeApiserver {
  /** http://127.0.0.1:PORT */
  url: string;
  /** Current (highest) resourceVersion. */
  rv(): number;
  /** Returns the stored copy (rv, uid, creationTimestamp set). Namespaced objects default to namespace "default". Throws StatusError (409) if it exists. */
  create(resource: string, obj: object): KubeObject;
  /** Full replace (uid/creationTimestamp kept, metadata.resourceVersion ignored); always bumps rv. Throws StatusError (404) if absent. */
  update(resource: string, obj: object): KubeObject;
  /** Returns the deleted object carrying the deletion rv, or undefined if absent. */
  delete(resource: string, namespace: string | undefined, name: string): KubeObject | undefined;
  get(resource: string, namespace: string | undefined, name: string): KubeObject | undefined;
  /** All objects of a resource in etcd key order (namespace/name). */
  list(resource: string): KubeObject[];
  /** Forget history up to rv (default: current rv); watches/lists from older RVs get 410 Expired. */
  compact(rv?: number): void;
  /** Abruptly end every open watch connection (upstream went away). */
  dropWatches(): void;
  /** Ends the open watches of a resource (of one namespace when given) with an ERROR 410 Expired event, as the apiserver ends a watch that fell behind compaction; returns how many. */
  expireWatches(resource: string, namespace?: string): number;
  /** Watch connections currently open. */
  openWatches(): number;
  /** Every request received, in order. */
  requests: RecordedRequest[];
  /** The requests answered with a gzipped body, in order. */
  gzipped: RecordedRequest[];
  /** Also ends open watches. */
  close(): Promise<void>;
}

const VERSION_INFO = {
  major: '1',
  minor: '35',
  emulationMajor: '1',
  emulationMinor: '35',
  minCompatibilityMajor: '1',
  minCompatibilityMinor: '34',
  gitVersion: 'v1.35.4-fake',
  gitCommit: '0000000000000000000000000000000000000000',
  gitTreeState: 'clean',
  buildDate: '2026-01-01T00:00:00Z',
  goVersion: 'go1.25.0',
  compiler: 'gc',
  platform: 'linux/amd64',
};

const UPGRADE_SUBRESOURCES = new Set(['exec', 'attach', 'portforward']);

/** Parse a resource path; undefined = not a resource path; 'notfound' = resource path that is not served. */
function parseResourcePath(parts: string[]): Route | 'notfound' | undefined {
  let gv: string;
  let rest: string[];
  if (parts[0] === 'api') {
    if (parts.length < 3) return undefined;
    gv = parts[1];
    rest = parts.slice(2);
  } else if (parts[0] === 'apis') {
    if (parts.length < 4) return undefined;
    gv = `${parts[1]}/${parts[2]}`;
    rest = parts.slice(3);
  } else return undefined;
  const defs = RESOURCES_BY_GV.get(gv);
  if (!defs) return 'notfound';
  let legacyWatch = false;
  if (rest[0] === 'watch') {
    legacyWatch = true;
    rest = rest.slice(1);
  }
  let namespace: string | undefined;
  let resource: string, name: string | undefined, sub: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 2) {
    if (rest.length === 2 || (rest.length === 3 && (rest[2] === 'status' || rest[2] === 'finalize'))) {
      [resource, name, sub] = rest;
    } else {
      namespace = rest[1];
      [resource, name, sub] = rest.slice(2);
      if (rest.length > 5) return 'notfound';
    }
  } else {
    if (rest.length > 3) return 'notfound';
    [resource, name, sub] = rest;
  }
  const def = defs.find((d) => d.name === resource);
  if (!def) return 'notfound';
  if (!def.namespaced && namespace !== undefined) return 'notfound';
  return { def, apiVersion: gv, namespace, name, sub, legacyWatch };
}

export async function startFakeApiserver(opts: FakeApiserverOptions = {}): Promise<FakeApiserver> {
  const store = new Store(opts.historySize ?? 10_000);
  const recorded = (req: IncomingMessage): RecordedRequest => ({ method: req.method ?? 'GET', url: req.url ?? '/', headers: { ...req.headers } });
  const gzipped: RecordedRequest[] = [];
  const rest = new Rest(store, {
    onGzipped: (req) => gzipped.push(recorded(req)),
    bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 60_000,
    gzipMinBytes: opts.gzipMinBytes,
    tooLargeWaitMs: opts.tooLargeWaitMs ?? 500,
  });
  const requests: RecordedRequest[] = [];
  const tunnels = new Set<Duplex>();
  let port = 0;

  const authorized = (req: IncomingMessage): boolean => {
    if (!opts.tokens) return true;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(String(req.headers.authorization ?? ''));
    return !!m && Object.prototype.hasOwnProperty.call(opts.tokens, m[1]);
  };

  const discovery = (parts: string[]): object | undefined => {
    const groups = apiGroups();
    const group = (g: { name: string; versions: string[] }) => ({
      name: g.name,
      versions: g.versions.map((v) => ({ groupVersion: `${g.name}/${v}`, version: v })),
      preferredVersion: { groupVersion: `${g.name}/${g.versions[0]}`, version: g.versions[0] },
    });
    if (parts.length === 1 && parts[0] === 'api') {
      return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: `127.0.0.1:${port}` }] };
    }
    if (parts.length === 1 && parts[0] === 'apis') return { kind: 'APIGroupList', apiVersion: 'v1', groups: groups.map(group) };
    if (parts.length === 2 && parts[0] === 'api') return apiResourceList(parts[1]);
    if (parts.length === 2 && parts[0] === 'apis') {
      const g = groups.find((x) => x.name === parts[1]);
      return g ? { kind: 'APIGroup', apiVersion: 'v1', ...group(g) } : undefined;
    }
    if (parts.length === 3 && parts[0] === 'apis') return apiResourceList(`${parts[1]}/${parts[2]}`);
    return undefined;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://fake');
    const parts = url.pathname.split('/').filter(Boolean);
    if (!authorized(req)) {
      await drain(req);
      return rest.sendStatus(req, res, S.unauthorized());
    }
    const p0 = parts[0];
    if ((p0 === 'healthz' || p0 === 'readyz' || p0 === 'livez') && req.method === 'GET') {
      return rest.send(req, res, 200, 'ok', 'text/plain; charset=utf-8');
    }
    if (p0 === 'version' && parts.length === 1) return rest.send(req, res, 200, JSON.stringify(VERSION_INFO, null, 2));
    if (req.method === 'POST' && url.pathname === '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews') {
      const review = JSON.parse((await readBody(req)) || '{}') as { spec?: object };
      const token = /^Bearer\s+(\S+)\s*$/i.exec(String(req.headers.authorization ?? ''))?.[1] ?? '';
      const allowed = !(opts.deniedTokens ?? []).includes(token);
      return rest.send(req, res, 201, JSON.stringify({ kind: 'SelfSubjectAccessReview', apiVersion: 'authorization.k8s.io/v1', metadata: {}, spec: review.spec ?? {}, status: { allowed } }));
    }
    const route = parseResourcePath(parts);
    if (route === undefined) {
      const doc = req.method === 'GET' ? discovery(parts) : undefined;
      if (doc) return rest.send(req, res, 200, JSON.stringify(doc));
      if (p0 === 'api' || p0 === 'apis') return rest.sendStatus(req, res, S.notFoundPath());
      return rest.send(req, res, 404, '404 page not found\n', 'text/plain; charset=utf-8');
    }
    if (route === 'notfound') {
      await drain(req);
      return rest.sendStatus(req, res, S.notFoundPath());
    }
    await rest.handle(req, res, route, url.searchParams);
  };

  const server = createServer((req, res) => {
    requests.push(recorded(req));
    handle(req, res).catch((e: unknown) => {
      const st: Status = e instanceof StatusError ? e.status : S.internal(String((e as Error)?.message ?? e));
      if (!res.headersSent) rest.sendStatus(req, res, st);
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 30_000;

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    requests.push(recorded(req));
    socket.on('error', () => socket.destroy());
    const raw = (code: number, reason: string, body: string) => {
      socket.end(`HTTP/1.1 ${code} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    };
    if (!authorized(req)) return raw(401, 'Unauthorized', JSON.stringify(S.unauthorized()));
    const url = new URL(req.url ?? '/', 'http://fake');
    const route = parseResourcePath(url.pathname.split('/').filter(Boolean));
    if (!route || route === 'notfound' || route.def.name !== 'pods' || !route.name || !route.sub || !UPGRADE_SUBRESOURCES.has(route.sub) || route.namespace === undefined) {
      return raw(404, 'Not Found', JSON.stringify(S.notFoundPath()));
    }
    if (!store.get('pods', route.namespace, route.name)) {
      return raw(404, 'Not Found', JSON.stringify(S.notFound(route.def, route.name)));
    }
    const lines = ['HTTP/1.1 101 Switching Protocols', 'Connection: Upgrade', `Upgrade: ${req.headers.upgrade ?? ''}`];
    const spdy = req.headers['x-stream-protocol-version'];
    if (spdy) lines.push(`X-Stream-Protocol-Version: ${String(spdy).split(',')[0].trim()}`);
    const wsKey = req.headers['sec-websocket-key'];
    if (typeof wsKey === 'string') {
      lines.push(`Sec-WebSocket-Accept: ${createHash('sha1').update(wsKey + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')}`);
      const proto = req.headers['sec-websocket-protocol'];
      if (proto) lines.push(`Sec-WebSocket-Protocol: ${String(proto).split(',')[0].trim()}`);
    }
    socket.write(lines.join('\r\n') + '\r\n\r\n');
    tunnels.add(socket);
    socket.on('close', () => tunnels.delete(socket));
    if (head.length) socket.write(head);
    socket.on('data', (d: Buffer) => socket.write(d));
    socket.on('end', () => socket.end());
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  port = (server.address() as { port: number }).port;

  const pub = (resource: string, item: Item): KubeObject => {
    const def = resourceDef(resource);
    return JSON.parse(typedJson(def, preferredApiVersion(def), item));
  };

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    gzipped,
    rv: () => store.rv,
    create: (resource, obj) => pub(resource, store.create(resource, obj as Record<string, any>)),
    update: (resource, obj) => pub(resource, store.update(resource, obj as Record<string, any>)),
    delete: (resource, namespace, name) => {
      const gone = store.delete(resource, namespace, name);
      return gone && pub(resource, gone);
    },
    get: (resource, namespace, name) => {
      const def = resourceDef(resource);
      const item = store.get(resource, def.namespaced ? namespace || 'default' : undefined, name);
      return item && pub(resource, item);
    },
    list: (resource) => {
      const def = resourceDef(resource);
      const m = store.current(resource);
      const keys = store.sortedKeys(resource, m);
      const prefix = `{"kind":"${def.kind}","apiVersion":"${preferredApiVersion(def)}",`;
      return JSON.parse('[' + keys.map((k) => prefix + itemJson(m.get(k)!).slice(1)).join(',') + ']');
    },
    compact: (rv) => store.compact(rv),
    dropWatches: () => {
      for (const w of [...rest.watches]) w.destroy();
    },
    expireWatches: (resource, namespace) => {
      const ended = [...rest.watches].filter((w) => w.route.def.name === resource && (namespace === undefined || w.route.namespace === namespace));
      for (const w of ended) w.errorAndEnd(S.expired(`too old resource version: ${store.compactedRv} (${store.rv})`));
      return ended.length;
    },
    openWatches: () => rest.watches.size,
    close: async () => {
      for (const w of [...rest.watches]) w.destroy();
      for (const t of [...tunnels]) t.destroy();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

function drain(req: IncomingMessage): Promise<void> {
  return new Promise((resolve) => {
    if (req.readableEnded) return resolve();
    req.on('end', resolve);
    req.on('error', () => resolve());
    req.resume();
  });
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
