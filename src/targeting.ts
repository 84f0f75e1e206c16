// Targeting: which filters apply to a request, given the client's component (User-Agent up to the
// first '/', lower case), the resource (plural name; group and version ignored) and the verb.
//
// Built-in defaults are each filter's `defaultComponents`; the ConfigMap `yurt-hub-cfg` adds
// components per filter under the key `<filter>` or `filter_<filter>` (value: comma list of
// components). Entries are trimmed, lower-cased and cut at the first '/'; they only ever add to
// the defaults. The mapping is precomputed, so `filtersFor` is a few map lookups.

import type { Filter } from '../filters/types.js';

/** Verbs whose responses are filtered (GET too: an object outside the view answers 404). */
export const TARGETED_VERBS: readonly string[] = Object.freeze(['get', 'list', 'watch']);

/** Prefix of the legacy ConfigMap key form (`filter_servicetopology`). */
const LEGACY_KEY_PREFIX = 'filter_';

/** RFC 9110 token characters (a User-Agent product name is a token), lower case. */
const PRODUCT_TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;

const MAX_WARNED_ENTRY = 80;
/** Bound on remembered non-normalised component spellings (User-Agents are client-controlled). */
const MAX_NORMALISED_CACHE = 1024;

const NO_FILTERS: readonly Filter[] = Object.freeze([]);
const NO_COMPONENTS: readonly string[] = Object.freeze([]);

/** A component name from a User-Agent or a ConfigMap entry: trimmed, lower-cased, cut at the first '/'. */
export function normaliseComponent(value: string): string {
  const slash = value.indexOf('/');
  return (slash < 0 ? value : value.slice(0, slash)).trim().toLowerCase();
}

/** Components that are never filtered: yurt-hub's own and poolview's own requests. */
export function isNeverFiltered(component: string): boolean {
  return component === 'yurthub' || component.startsWith('poolview');
}

type Table = Map<string, Map<string, Map<string, readonly Filter[]>>>;

export class Targeting {
  /** Bumped whenever the (component, resource, verb) → filters mapping changes. */
  version = 0;

  private readonly filters: readonly Filter[];
  private readonly known: ReadonlySet<string>;
  private table: Table = new Map();
  private components = new Map<string, readonly string[]>();
  private signature = '';
  private reported: ReadonlySet<string> = new Set();
  private currentWarnings: readonly string[] = NO_COMPONENTS;
  private readonly normalised = new Map<string, string>();

  constructor(filters: readonly Filter[]) {
    const names = new Set<string>();
    for (const f of filters) {
      if (names.has(f.name)) throw new Error(`targeting: filter ${JSON.stringify(f.name)} registered twice`);
      names.add(f.name);
    }
    this.filters = Object.freeze([...filters]);
    this.known = names;
    this.apply(new Map());
    this.version = 0;
  }

  /** Problems in the current ConfigMap content (all of them, also those already reported). */
  get configWarnings(): readonly string[] {
    return this.currentWarnings;
  }

  /**
   * Applies the data of `yurt-hub-cfg`; undefined = the ConfigMap is gone (back to defaults).
   * Never throws. Returns the problems found that were not already reported for the previous
   * content, so a periodic resync with the same data does not repeat them.
   */
  setConfigMap(data: Record<string, string> | undefined): { warnings: string[] } {
    const extras = new Map<string, string[]>();
    const warnings = new Set<string>();
    if (data !== undefined && data !== null) {
      for (const [key, value] of Object.entries(data)) {
        const filterName = this.filterForKey(key);
        if (filterName === undefined) continue; // unknown keys (cache_agents, ...) are not ours
        if (typeof value !== 'string') {
          warnings.add(`yurt-hub-cfg key ${key}: value is not a string; ignored`);
          continue;
        }
        const list = extras.get(filterName) ?? [];
        for (const raw of value.split(',')) {
          const component = parseEntry(key, raw, warnings);
          if (component !== undefined) list.push(component);
        }
        extras.set(filterName, list);
      }
    }
    this.apply(extras);
    const fresh = [...warnings].filter((w) => !this.reported.has(w));
    this.reported = warnings;
    this.currentWarnings = Object.freeze([...warnings]);
    return { warnings: fresh };
  }

  /** Filters for a request, in registration order; empty when nothing applies. The same array is returned for the same inputs until the mapping changes. */
  filtersFor(component: string | undefined, resource: string, verb: string): readonly Filter[] {
    if (component === undefined || component === '') return NO_FILTERS;
    const byComponent = this.table.get(resource)?.get(verb);
    if (byComponent === undefined) return NO_FILTERS;
    const direct = byComponent.get(component);
    if (direct !== undefined) return direct;
    const normalised = this.normalise(component);
    if (normalised === component) return NO_FILTERS;
    return byComponent.get(normalised) ?? NO_FILTERS;
  }

  /** Plural resource names some filter applies to: what a targeting change may re-decide. */
  get resources(): ReadonlySet<string> {
    return new Set(this.filters.flatMap((f) => f.resources));
  }

  /** Components a filter applies to (defaults, then ConfigMap additions); empty for an unknown filter. */
  componentsFor(filterName: string): readonly string[] {
    return this.components.get(filterName) ?? NO_COMPONENTS;
  }

  private filterForKey(key: string): string | undefined {
    if (this.known.has(key)) return key;
    if (key.startsWith(LEGACY_KEY_PREFIX)) {
      const name = key.slice(LEGACY_KEY_PREFIX.length);
      if (this.known.has(name)) return name;
    }
    return undefined;
  }

  private normalise(component: string): string {
    let n = this.normalised.get(component);
    if (n === undefined) {
      n = normaliseComponent(component);
      if (this.normalised.size >= MAX_NORMALISED_CACHE) this.normalised.clear();
      this.normalised.set(component, n);
    }
    return n;
  }

  /** Rebuilds the table when the effective components per filter differ from the current ones. */
  private apply(extras: ReadonlyMap<string, readonly string[]>): void {
    const components = new Map<string, readonly string[]>();
    const parts: string[] = [];
    for (const f of this.filters) {
      const set = new Set<string>();
      for (const c of f.defaultComponents) {
        const n = normaliseComponent(c);
        if (n !== '' && !isNeverFiltered(n)) set.add(n);
      }
      for (const c of extras.get(f.name) ?? NO_COMPONENTS) set.add(c);
      const list = Object.freeze([...set]);
      components.set(f.name, list);
      parts.push(`${f.name}=${[...list].sort().join(',')}`);
    }
    const signature = parts.join(';');
    if (signature === this.signature) return;

    const table: Table = new Map();
    for (const f of this.filters) {
      for (const resource of f.resources) {
        let byVerb = table.get(resource);
        if (byVerb === undefined) table.set(resource, (byVerb = new Map()));
        for (const verb of TARGETED_VERBS) {
          let byComponent = byVerb.get(verb);
          if (byComponent === undefined) byVerb.set(verb, (byComponent = new Map()));
          for (const c of components.get(f.name) ?? NO_COMPONENTS) {
            const current = byComponent.get(c) ?? NO_FILTERS;
            if (!current.includes(f)) byComponent.set(c, [...current, f]);
          }
        }
      }
    }
    for (const byVerb of table.values()) {
      for (const byComponent of byVerb.values()) {
        for (const [c, list] of byComponent) byComponent.set(c, Object.freeze(list));
      }
    }
    this.table = table;
    this.components = components;
    this.signature = signature;
    this.version++;
  }
}

/** One ConfigMap entry → a component, or undefined (with a warning when it is broken). */
function parseEntry(key: string, raw: string, warnings: Set<string>): string | undefined {
  const entry = raw.trim();
  if (entry === '') return undefined;
  const shown = JSON.stringify(entry.length > MAX_WARNED_ENTRY ? entry.slice(0, MAX_WARNED_ENTRY) + '…' : entry);
  const slash = entry.indexOf('/');
  const component = normaliseComponent(entry);
  if (component === '') {
    warnings.add(`yurt-hub-cfg key ${key}: entry ${shown} names no component; ignored`);
    return undefined;
  }
  if (!PRODUCT_TOKEN.test(component)) {
    warnings.add(`yurt-hub-cfg key ${key}: entry ${shown} is not a User-Agent product name; ignored`);
    return undefined;
  }
  if (slash >= 0 && entry.indexOf('#', slash) >= 0) {
    warnings.add(
      `yurt-hub-cfg key ${key}: entry ${shown} uses the old component/resource#verbs syntax; ` +
        `using component ${JSON.stringify(component)} for every resource and verb of the filter`,
    );
  }
  if (isNeverFiltered(component)) {
    warnings.add(`yurt-hub-cfg key ${key}: component ${JSON.stringify(component)} is never filtered; ignored`);
    return undefined;
  }
  return component;
}
