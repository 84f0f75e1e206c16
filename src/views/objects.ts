// Object helpers of the view engine. Objects from upstream are never mutated in place once shared.
import type { KubeObject } from '../../filters/types.js';
import { rvNumber } from '../revisions.js';

export function withResourceVersion(obj: KubeObject, rv: string): KubeObject {
  if (obj.metadata.resourceVersion === rv) return obj;
  return { ...obj, metadata: { ...obj.metadata, resourceVersion: rv } };
}

/**
 * docs/design.md rule 5 (mechanism (d)): content that a scope change may have altered is served with a
 * resourceVersion no older than that change, so an informer never takes it for a resync.
 */
export function notOlderThan(obj: KubeObject, changedAt: number): KubeObject {
  return changedAt > rvNumber(obj.metadata.resourceVersion) ? withResourceVersion(obj, String(changedAt)) : obj;
}

/** Deep equality of two decoded JSON values, ignoring metadata.resourceVersion at the top. */
export function sameContent(a: KubeObject, b: KubeObject): boolean {
  if (a === b) return true;
  const { resourceVersion: _a, ...ma } = a.metadata;
  const { resourceVersion: _b, ...mb } = b.metadata;
  return deepEqual({ ...a, metadata: ma }, { ...b, metadata: mb });
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (!deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  return true;
}

/** The PartialObjectMetadata a metadata-only client asked for. */
export function toMetadata(obj: KubeObject): KubeObject {
  return { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: obj.metadata };
}
