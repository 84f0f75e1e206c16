// Label and field selectors with the apiserver's syntax and matching rules.
import type { ResourceDef } from './resources.js';

export class SelectorError extends Error {}

type Obj = Record<string, any>;
export type Predicate = (obj: Obj) => boolean;

interface LabelReq {
  key: string;
  op: 'exists' | '!' | '=' | '!=' | 'in' | 'notin' | 'gt' | 'lt';
  values: string[];
}

// ---------------------------------------------------------------- label selectors

function tokenize(s: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c === ' ' || c === '\t' || c === '\n') { i++; continue; }
    if (c === '!' && s[i + 1] === '=') { out.push('!='); i += 2; continue; }
    if (c === '=' && s[i + 1] === '=') { out.push('=='); i += 2; continue; }
    if (c === '!' || c === '=' || c === '(' || c === ')' || c === ',' || c === '>' || c === '<') { out.push(c); i++; continue; }
    let j = i;
    while (j < s.length && !' \t\n!=(),<>'.includes(s[j])) j++;
    out.push('w:' + s.slice(i, j));
    i = j;
  }
  return out;
}

const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

export function parseLabelSelector(s: string): LabelReq[] {
  const toks = tokenize(s);
  const reqs: LabelReq[] = [];
  let p = 0;
  const word = (what: string): string => {
    const t = toks[p];
    if (t === undefined || !t.startsWith('w:')) throw new SelectorError(`unable to parse requirement: found '${t ?? ''}', expected: ${what}`);
    p++;
    return t.slice(2);
  };
  const key = (): string => {
    const k = word('identifier');
    if (!LABEL_KEY.test(k) || k.length > 316) throw new SelectorError(`unable to parse requirement: invalid label key "${k}"`);
    return k;
  };
  const value = (v: string): string => {
    if (v.length > 63 || !LABEL_VALUE.test(v)) throw new SelectorError(`unable to parse requirement: invalid label value: "${v}"`);
    return v;
  };
  while (p < toks.length) {
    if (toks[p] === '!') {
      p++;
      reqs.push({ key: key(), op: '!', values: [] });
    } else {
      const k = key();
      const t = toks[p];
      if (t === undefined || t === ',') {
        reqs.push({ key: k, op: 'exists', values: [] });
      } else if (t === '=' || t === '==' || t === '!=') {
        p++;
        const nt = toks[p];
        const v = nt === undefined || nt === ',' ? '' : word('identifier');
        reqs.push({ key: k, op: t === '!=' ? '!=' : '=', values: [value(v)] });
      } else if (t === '>' || t === '<') {
        p++;
        const v = word('integer');
        if (!/^-?\d+$/.test(v)) throw new SelectorError(`unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer`);
        reqs.push({ key: k, op: t === '>' ? 'gt' : 'lt', values: [v] });
      } else if (t === 'w:in' || t === 'w:notin') {
        p++;
        if (toks[p] !== '(') throw new SelectorError(`unable to parse requirement: found '${toks[p] ?? ''}', expected: '('`);
        p++;
        const values: string[] = [];
        for (;;) {
          const nt = toks[p];
          if (nt === ')') { p++; break; }
          if (nt === ',') { p++; if (toks[p] === ',' || toks[p] === ')') values.push(''); continue; }
          if (nt === undefined) throw new SelectorError(`unable to parse requirement: found '', expected: ')'`);
          values.push(value(word('identifier')));
        }
        if (values.length === 0) throw new SelectorError(`unable to parse requirement: for 'in', 'notin' operators, values set can't be empty`);
        reqs.push({ key: k, op: t === 'w:in' ? 'in' : 'notin', values });
      } else {
        throw new SelectorError(`unable to parse requirement: found '${t.replace(/^w:/, '')}', expected: '=', '!=', '==', 'in', notin'`);
      }
    }
    if (p < toks.length) {
      if (toks[p] !== ',') throw new SelectorError(`unable to parse requirement: found '${toks[p].replace(/^w:/, '')}', expected: ','`);
      p++;
      if (p >= toks.length) throw new SelectorError(`unable to parse requirement: found '', expected: identifier`);
    }
  }
  return reqs;
}

export function labelPredicate(s: string | null | undefined): Predicate | undefined {
  if (!s || !s.trim()) return undefined;
  const reqs = parseLabelSelector(s);
  return (obj) => {
    const labels: Record<string, string> = obj.metadata?.labels ?? {};
    for (const r of reqs) {
      const has = Object.prototype.hasOwnProperty.call(labels, r.key);
      const v = has ? labels[r.key] : undefined;
      switch (r.op) {
        case 'exists': if (!has) return false; break;
        case '!': if (has) return false; break;
        case '=': if (v !== r.values[0]) return false; break;
        case '!=': if (has && v === r.values[0]) return false; break;
        case 'in': if (!has || !r.values.includes(v!)) return false; break;
        case 'notin': if (has && r.values.includes(v!)) return false; break;
        case 'gt': case 'lt': {
          if (!has || !/^-?\d+$/.test(v!)) return false;
          const a = Number(v), b = Number(r.values[0]);
          if (r.op === 'gt' ? !(a > b) : !(a < b)) return false;
          break;
        }
      }
    }
    return true;
  };
}

// ---------------------------------------------------------------- field selectors

function splitUnescaped(s: string, sep: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && i + 1 < s.length) { cur += c + s[i + 1]; i++; continue; }
    if (c === sep) { parts.push(cur); cur = ''; continue; }
    cur += c;
  }
  parts.push(cur);
  return parts;
}

function unescapeFieldValue(v: string): string {
  let out = '';
  for (let i = 0; i < v.length; i++) {
    const c = v[i];
    if (c === '\\') {
      const n = v[i + 1];
      if (n === '\\' || n === ',' || n === '=') { out += n; i++; continue; }
      throw new SelectorError(`invalid field selector: invalid escape sequence`);
    }
    if (c === ',' || c === '=') throw new SelectorError(`invalid field selector: unescaped ${c}`);
    out += c;
  }
  return out;
}

function getPath(obj: Obj, path: string): string {
  let cur: any = obj;
  for (const seg of path.split('.')) {
    if (cur === null || cur === undefined) return '';
    cur = cur[seg];
  }
  if (cur === null || cur === undefined) return '';
  return String(cur);
}

export function fieldPredicate(s: string | null | undefined, def: ResourceDef): Predicate | undefined {
  if (!s || !s.trim()) return undefined;
  const terms: Array<{ path: string; neg: boolean; value: string }> = [];
  for (const raw of splitUnescaped(s, ',')) {
    const term = raw.trim();
    if (!term) continue;
    let idx = -1, op = '';
    for (const cand of ['!=', '==', '=']) {
      idx = term.indexOf(cand);
      if (idx >= 0) { op = cand; break; }
    }
    if (idx < 0) throw new SelectorError(`invalid selector: '${term}'; can't understand '${term}'`);
    const label = term.slice(0, idx).trim();
    const value = unescapeFieldValue(term.slice(idx + op.length));
    let path: string | undefined;
    if (label === 'metadata.name' || label === 'metadata.namespace') path = label;
    else path = def.fields[label];
    if (path === undefined) throw new SelectorError(`field label not supported: ${label}`);
    terms.push({ path, neg: op === '!=', value });
  }
  if (terms.length === 0) return undefined;
  return (obj) => {
    for (const t of terms) {
      const v = getPath(obj, t.path);
      if ((v === t.value) === t.neg) return false;
    }
    return true;
  };
}

/** Conjunction of the defined predicates (undefined = match everything). */
export function and(...ps: Array<Predicate | undefined>): Predicate | undefined {
  const list = ps.filter((p): p is Predicate => p !== undefined);
  if (list.length === 0) return undefined;
  if (list.length === 1) return list[0];
  return (obj) => list.every((p) => p(obj));
}
