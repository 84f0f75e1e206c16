// metav1.Status builders shaped like the apiserver's (k8s.io/apimachinery/pkg/api/errors).
import type { ResourceDef } from './resources.js';

export interface Status {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: { continue?: string };
  status: 'Failure' | 'Success';
  message: string;
  reason: string;
  details?: Record<string, unknown>;
  code: number;
}

/** Thrown by the store and handlers; carries the Status to send. */
export class StatusError extends Error {
  constructor(readonly status: Status) {
    super(status.message);
  }
  get code(): number {
    return this.status.code;
  }
}

function status(code: number, reason: string, message: string, details?: Record<string, unknown>): Status {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code };
}

export function qualified(def: ResourceDef): string {
  return def.group ? `${def.name}.${def.group}` : def.name;
}

function details(def: ResourceDef, name: string): Record<string, unknown> {
  return def.group ? { name, group: def.group, kind: def.name } : { name, kind: def.name };
}

export const S = {
  notFound: (def: ResourceDef, name: string) => status(404, 'NotFound', `${qualified(def)} "${name}" not found`, details(def, name)),
  alreadyExists: (def: ResourceDef, name: string) => status(409, 'AlreadyExists', `${qualified(def)} "${name}" already exists`, details(def, name)),
  conflict: (def: ResourceDef, name: string, why = 'the object has been modified; please apply your changes to the latest version and try again') =>
    status(409, 'Conflict', `Operation cannot be fulfilled on ${qualified(def)} "${name}": ${why}`, details(def, name)),
  expired: (message: string, continueToken?: string) => {
    const st = status(410, 'Expired', message);
    if (continueToken) st.metadata = { continue: continueToken };
    return st;
  },
  tooLarge: (requested: number, current: number) =>
    ({
      ...status(504, 'Timeout', `Timeout: Too large resource version: ${requested}, current: ${current}`, {
        causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
        retryAfterSeconds: 1,
      }),
    }) as Status,
  badRequest: (message: string) => status(400, 'BadRequest', message),
  unauthorized: () => status(401, 'Unauthorized', 'Unauthorized'),
  notFoundPath: () => status(404, 'NotFound', 'the server could not find the requested resource', {}),
  methodNotAllowed: (method: string) => status(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`, {}),
  unsupportedMediaType: (ct: string) => status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json`, { causes: [{ message: ct }] }),
  internal: (message: string) => status(500, 'InternalError', `Internal error occurred: ${message}`, { causes: [{ message }] }),
  /** 422 Invalid; errs = [{field, type ('Forbidden' | 'Unsupported value' | 'Required value' | 'Invalid value'), detail}] */
  invalid: (kind: string, group: string, name: string, errs: Array<{ field: string; type: string; detail: string }>) => {
    const reasonOf: Record<string, string> = {
      Forbidden: 'FieldValueForbidden',
      'Unsupported value': 'FieldValueNotSupported',
      'Required value': 'FieldValueRequired',
      'Invalid value': 'FieldValueInvalid',
    };
    const msgs = errs.map((e) => `${e.field}: ${e.type}: ${e.detail}`);
    const joined = msgs.length === 1 ? msgs[0] : `[${msgs.join(', ')}]`;
    const q = group ? `${kind}.${group}` : kind;
    return status(422, 'Invalid', `${q} "${name}" is invalid: ${joined}`, {
      name: name || undefined,
      group: group || undefined,
      kind,
      causes: errs.map((e) => ({ reason: reasonOf[e.type] ?? 'FieldValueInvalid', message: `${e.type}: ${e.detail}`, field: e.field })),
    });
  },
};
