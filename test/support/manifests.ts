// Manifests as kubectl prints and reads them: parsing multi-document YAML, and the lines of a dry run.
import { expect } from 'vitest';
import { parseAllDocuments } from 'yaml';
import type { KubeObject } from './cluster.js';

export type Obj = KubeObject & Record<string, any>;

/** The objects of a multi-document YAML text (empty documents dropped). */
export function parseObjects(text: string): Obj[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => !!o);
}

/** kubectl printed one "<kind>[.<group>]/<name> ... (server dry run)" line per object. */
export function expectDryRunLines(stdout: string, objects: Obj[]): void {
  const lines = stdout.trim().split('\n');
  expect(lines, stdout).toHaveLength(objects.length);
  for (const o of objects) {
    const group = o.apiVersion!.includes('/') ? `.${o.apiVersion!.split('/')[0]}` : '';
    const prefix = `${o.kind!.toLowerCase()}${group}/${o.metadata!.name} `;
    expect(lines.some((l) => l.startsWith(prefix) && l.endsWith('(server dry run)')), `${prefix}... (server dry run) in\n${stdout}`).toBe(true);
  }
}

/** kubectl apply's stderr without the warning for objects the e2e harness created server-side (ClusterRole/Binding "poolview"). */
export function unexpectedApplyWarnings(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.trim() && !/missing the kubectl\.kubernetes\.io\/last-applied-configuration annotation|patched automatically/.test(l));
}
