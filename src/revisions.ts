// Tracks W: the highest resourceVersion poolview has seen from the apiserver on any stream, and per
// resource the highest one seen on that resource's streams (a revision that may be one of its events).
// resourceVersions are etcd revisions: integers that fit a JS number for the life of a cluster.

export function rvNumber(rv: string | undefined): number {
  if (!rv) return 0;
  const n = Number(rv);
  return Number.isSafeInteger(n) ? n : 0;
}

export class Revisions {
  private highest = 0;
  private readonly byResource = new Map<string, number>();

  observe(rv: string | number | undefined, resource?: string): void {
    const n = typeof rv === 'number' ? rv : rvNumber(rv);
    if (n > this.highest) this.highest = n;
    if (resource !== undefined && n > (this.byResource.get(resource) ?? 0)) this.byResource.set(resource, n);
  }

  get high(): number {
    return this.highest;
  }

  /** The highest revision seen on a stream or list of this resource. */
  highFor(resource: string): number {
    return this.byResource.get(resource) ?? 0;
  }
}
