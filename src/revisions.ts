// Tracks W: the highest resourceVersion poolview has seen from the apiserver on any stream.
// resourceVersions are etcd revisions: integers that fit a JS number for the life of a cluster.

export function rvNumber(rv: string | undefined): number {
  if (!rv) return 0;
  const n = Number(rv);
  return Number.isSafeInteger(n) ? n : 0;
}

export class Revisions {
  private highest = 0;

  observe(rv: string | number | undefined): void {
    const n = typeof rv === 'number' ? rv : rvNumber(rv);
    if (n > this.highest) this.highest = n;
  }

  get high(): number {
    return this.highest;
  }
}
