// Label and field selectors as the apiserver parses them, for the cached resources. A selector
// this module cannot evaluate exactly is `undefined`: the request then goes upstream unchanged.

export interface SelectableObject {
  name: string;
  namespace: string;
  labels: Readonly<Record<string, string>> | undefined;
  /** The resource's own selectable fields (e.g. a Service's spec.clusterIP), by field label. */
  fields?: Readonly<Record<string, string>>;
}

export type Predicate = (obj: SelectableObject) => boolean;

type Requirement = (labels: Readonly<Record<string, string>>) => boolean;

const KEY = /^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?\/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$/;
const VALUE = /^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?)?$/;

/** Splits on commas outside parentheses: `a in (x,y),b` is two requirements. */
function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '(') depth++;
    else if (text[i] === ')') depth--;
    else if (text[i] === ',' && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts.map((p) => p.trim());
}

function requirement(text: string): Requirement | undefined {
  let m = /^(!?)\s*([^\s!=(),]+)$/.exec(text);
  if (m) {
    const [, not, key] = m;
    if (!KEY.test(key)) return undefined;
    return not ? (l) => !(key in l) : (l) => key in l;
  }
  m = /^([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)$/.exec(text);
  if (m) {
    const [, key, op, value] = m;
    if (!KEY.test(key) || !VALUE.test(value)) return undefined;
    return op === '!=' ? (l) => l[key] !== value : (l) => l[key] === value;
  }
  m = /^([^\s!=(),]+)\s+(in|notin)\s*\(([^()]*)\)$/.exec(text);
  if (m) {
    const [, key, op] = m;
    const values = new Set(m[3].split(',').map((v) => v.trim()));
    if (!KEY.test(key) || [...values].some((v) => !VALUE.test(v))) return undefined;
    // notin also matches objects without the label, as in k8s.io/apimachinery/pkg/labels.
    return op === 'in' ? (l) => key in l && values.has(l[key]) : (l) => !(key in l) || !values.has(l[key]);
  }
  return undefined;
}

/** A labelSelector query value as a predicate; undefined when it does not parse. */
export function parseLabelSelector(text: string): Predicate | undefined {
  if (text.trim() === '') return () => true;
  const reqs: Requirement[] = [];
  for (const part of splitTopLevel(text)) {
    const r = requirement(part);
    if (!r) return undefined;
    reqs.push(r);
  }
  return (obj) => {
    const labels = obj.labels ?? {};
    return reqs.every((r) => r(labels));
  };
}

/** A fieldSelector over metadata.name / metadata.namespace and the resource's own `fields`; undefined for any other field. */
export function parseFieldSelector(text: string, fields: readonly string[] = []): Predicate | undefined {
  if (text.trim() === '') return () => true;
  const tests: Predicate[] = [];
  for (const part of text.split(',')) {
    const m = /^\s*([A-Za-z.]+)\s*(==|=|!=)\s*([^,]*?)\s*$/.exec(part);
    if (!m || m[3].includes('\\')) return undefined; // escaped values: the apiserver's to decode
    const [, field, op, value] = m;
    let get: (o: SelectableObject) => string;
    if (field === 'metadata.name') get = (o) => o.name;
    else if (field === 'metadata.namespace') get = (o) => o.namespace;
    else if (fields.includes(field)) get = (o) => o.fields?.[field] ?? '';
    else return undefined;
    tests.push(op === '!=' ? (o) => get(o) !== value : (o) => get(o) === value);
  }
  return (obj) => tests.every((t) => t(obj));
}

/** Both selectors and the path's namespace together; undefined when any cannot be served. */
export function requestPredicate(namespace: string, labelSelector: string | null, fieldSelector: string | null, fieldLabels: readonly string[] = []): { match: Predicate; everything: boolean } | undefined {
  const labels = parseLabelSelector(labelSelector ?? '');
  const fields = parseFieldSelector(fieldSelector ?? '', fieldLabels);
  if (!labels || !fields) return undefined;
  const everything = !namespace && !(labelSelector ?? '').trim() && !(fieldSelector ?? '').trim();
  return { match: (o) => (!namespace || o.namespace === namespace) && labels(o) && fields(o), everything };
}
