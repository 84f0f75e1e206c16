// JSON merge patch (RFC 7386; also used for strategic merge patch) and JSON patch (RFC 6902).
import { S, StatusError } from './status.js';

type Json = any;

export function mergePatch(target: Json, patch: Json): Json {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, Json> = target && typeof target === 'object' && !Array.isArray(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function unescapePointer(seg: string): string {
  return seg.replace(/~1/g, '/').replace(/~0/g, '~');
}

function parsePointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new StatusError(S.badRequest(`invalid JSON pointer ${JSON.stringify(path)}`));
  return path.slice(1).split('/').map(unescapePointer);
}

function resolveParent(doc: Json, segs: string[], op: string): { parent: Json; key: string } {
  let cur = doc;
  for (const s of segs.slice(0, -1)) {
    if (cur === null || typeof cur !== 'object') throw new StatusError(S.internal(`${op} operation does not apply: doc is missing path: "/${segs.join('/')}": missing value`));
    cur = Array.isArray(cur) ? cur[Number(s)] : cur[s];
  }
  if (cur === null || typeof cur !== 'object') throw new StatusError(S.internal(`${op} operation does not apply: doc is missing path: "/${segs.join('/')}": missing value`));
  return { parent: cur, key: segs[segs.length - 1] };
}

function getAt(doc: Json, segs: string[]): Json {
  let cur = doc;
  for (const s of segs) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = Array.isArray(cur) ? cur[Number(s)] : cur[s];
  }
  return cur;
}

/** Applies add/remove/replace/test/move/copy to a deep copy of doc. */
export function jsonPatch(doc: Json, ops: Json): Json {
  if (!Array.isArray(ops)) throw new StatusError(S.badRequest('json patch must be an array of operations'));
  let root = JSON.parse(JSON.stringify(doc));
  const missing = (op: string, path: string) => new StatusError(S.internal(`${op} operation does not apply: doc is missing path: "${path}": missing value`));
  const add = (segs: string[], value: Json) => {
    if (segs.length === 0) { root = value; return; }
    const { parent, key } = resolveParent(root, segs, 'add');
    if (Array.isArray(parent)) {
      const idx = key === '-' ? parent.length : Number(key);
      if (!Number.isInteger(idx) || idx < 0 || idx > parent.length) throw missing('add', '/' + segs.join('/'));
      parent.splice(idx, 0, value);
    } else parent[key] = value;
  };
  const remove = (segs: string[], path: string): Json => {
    const { parent, key } = resolveParent(root, segs, 'remove');
    if (Array.isArray(parent)) {
      const idx = Number(key);
      if (!Number.isInteger(idx) || idx < 0 || idx >= parent.length) throw missing('remove', path);
      return parent.splice(idx, 1)[0];
    }
    if (!(key in parent)) throw missing('remove', path);
    const v = parent[key];
    delete parent[key];
    return v;
  };
  for (const o of ops) {
    const segs = parsePointer(String(o.path ?? ''));
    switch (o.op) {
      case 'add': add(segs, o.value); break;
      case 'remove': remove(segs, o.path); break;
      case 'replace': {
        if (segs.length === 0) { root = o.value; break; }
        const { parent, key } = resolveParent(root, segs, 'replace');
        if (Array.isArray(parent) ? !(Number(key) >= 0 && Number(key) < parent.length) : !(key in parent)) throw missing('replace', o.path);
        parent[key] = o.value;
        break;
      }
      case 'test':
        if (JSON.stringify(getAt(root, segs)) !== JSON.stringify(o.value)) throw new StatusError(S.internal(`testing value ${o.path} failed: test failed`));
        break;
      case 'move': { const v = remove(parsePointer(o.from), o.from); add(segs, v); break; }
      case 'copy': add(segs, JSON.parse(JSON.stringify(getAt(root, parsePointer(o.from)) ?? null))); break;
      default: throw new StatusError(S.badRequest(`Unexpected kind: ${o.op}`));
    }
  }
  return root;
}
