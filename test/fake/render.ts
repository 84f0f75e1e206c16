// Content negotiation (plain JSON / Table / PartialObjectMetadata) and serialization of items, lists and watch events.
import type { ResourceDef } from './resources.js';
import { itemJson, type Item } from './store.js';

export type OutputMode = { as: 'json' } | { as: 'partial' } | { as: 'table'; version: string; includeObject: string };

/**
 * Picks the first Accept clause we can honour. Non-JSON clauses (protobuf, cbor, yaml) are skipped; when nothing
 * matches, plain JSON is served anyway.
 */
export function negotiate(accept: string | undefined, target: 'list' | 'object', includeObject: string | null): OutputMode {
  if (!accept) return { as: 'json' };
  for (const clause of accept.split(',')) {
    const [rawType, ...rawParams] = clause.split(';');
    const type = rawType.trim().toLowerCase();
    if (type !== 'application/json' && type !== 'application/*' && type !== '*/*') continue;
    const params: Record<string, string> = {};
    for (const p of rawParams) {
      const i = p.indexOf('=');
      if (i > 0) params[p.slice(0, i).trim().toLowerCase()] = p.slice(i + 1).trim();
    }
    if (!params.as) return { as: 'json' };
    if (params.g !== 'meta.k8s.io' || (params.v !== 'v1' && params.v !== 'v1beta1')) continue;
    if (params.as === 'Table') return { as: 'table', version: params.v, includeObject: includeObject || 'Metadata' };
    if (params.as === 'PartialObjectMetadata' && target === 'object') return { as: 'partial' };
    if (params.as === 'PartialObjectMetadataList' && target === 'list') return { as: 'partial' };
  }
  return { as: 'json' };
}

/** The item as a typed object's JSON: kind and apiVersion first, as the apiserver writes them. */
export function typedJson(def: ResourceDef, apiVersion: string, item: Item): string {
  return `{"kind":"${def.kind}","apiVersion":"${apiVersion}",` + itemJson(item).slice(1);
}

function partial(item: Item): object {
  return { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: item.metadata };
}

const COLUMNS = [
  { name: 'Name', type: 'string', format: 'name', description: 'Name must be unique within a namespace.', priority: 0 },
  { name: 'Created At', type: 'date', format: '', description: 'CreationTimestamp is a timestamp representing the server time when this object was created.', priority: 0 },
];

function tableRow(def: ResourceDef, apiVersion: string, mode: { includeObject: string }, item: Item): string {
  const cells = JSON.stringify([item.metadata.name, item.metadata.creationTimestamp]);
  let object = '';
  if (mode.includeObject === 'Object') object = `,"object":` + typedJson(def, apiVersion, item);
  else if (mode.includeObject !== 'None') object = `,"object":` + JSON.stringify(partial(item));
  return `{"cells":${cells}${object}}`;
}

function tableJson(def: ResourceDef, apiVersion: string, mode: { version: string; includeObject: string }, meta: object, items: Item[], withColumns: boolean): string {
  return (
    `{"kind":"Table","apiVersion":"meta.k8s.io/${mode.version}","metadata":${JSON.stringify(meta)},` +
    `"columnDefinitions":${withColumns ? JSON.stringify(COLUMNS) : 'null'},` +
    `"rows":[${items.map((it) => tableRow(def, apiVersion, mode, it)).join(',')}]}`
  );
}

export function renderObject(def: ResourceDef, apiVersion: string, mode: OutputMode, item: Item): string {
  if (mode.as === 'json') return typedJson(def, apiVersion, item);
  if (mode.as === 'partial') return JSON.stringify(partial(item));
  return tableJson(def, apiVersion, mode, { resourceVersion: item.metadata.resourceVersion }, [item], true);
}

export function renderList(def: ResourceDef, apiVersion: string, mode: OutputMode, meta: object, items: Item[]): string {
  const m = JSON.stringify(meta);
  if (mode.as === 'json') {
    return `{"kind":"${def.kind}List","apiVersion":"${apiVersion}","metadata":${m},"items":[${items.map(itemJson).join(',')}]}`;
  }
  if (mode.as === 'partial') {
    return `{"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","metadata":${m},"items":[${items.map((it) => JSON.stringify(partial(it))).join(',')}]}`;
  }
  return tableJson(def, apiVersion, mode, meta, items, true);
}

/** A watch event line (one JSON document + newline). */
export function renderEvent(def: ResourceDef, apiVersion: string, mode: OutputMode, type: string, item: Item, first: boolean): string {
  let obj: string;
  if (mode.as === 'json') obj = typedJson(def, apiVersion, item);
  else if (mode.as === 'partial') obj = JSON.stringify(partial(item));
  else obj = tableJson(def, apiVersion, mode, { resourceVersion: item.metadata.resourceVersion }, [item], first);
  return `{"type":"${type}","object":${obj}}\n`;
}

export function renderBookmark(def: ResourceDef, apiVersion: string, mode: OutputMode, rv: number, initialEventsEnd: boolean): string {
  const metadata: Record<string, unknown> = { resourceVersion: String(rv) };
  if (initialEventsEnd) metadata.annotations = { 'k8s.io/initial-events-end': 'true' };
  let obj: object;
  if (mode.as === 'json') obj = { kind: def.kind, apiVersion, metadata };
  else if (mode.as === 'partial') obj = { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata };
  else obj = { kind: 'Table', apiVersion: `meta.k8s.io/${mode.version}`, metadata: { resourceVersion: String(rv) }, columnDefinitions: null, rows: [] };
  return JSON.stringify({ type: 'BOOKMARK', object: obj }) + '\n';
}
