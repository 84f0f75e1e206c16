// Serving from the cache never skips authorization: a client's request is answered from the cache
// only after the apiserver said, to a SelfSubjectAccessReview made with the client's own
// credentials, that this client may do exactly this. Answers are reused for a short time per
// (credential, attributes); the credential is kept only as a hash and never logged.
import { createHash } from 'node:crypto';
import { request, type Dispatcher } from 'undici';
import type { Upstream } from '../types.js';
import { readAll } from '../upstream-body.js';

export interface ResourceAttributes {
  verb: string;
  group: string;
  resource: string;
  namespace: string;
  name: string;
}

const REVIEW_TIMEOUT_MS = 10_000;
/** Bound on remembered answers: a flood of distinct tokens cannot grow memory without limit. */
const MAX_ENTRIES = 10_000;

export class AccessReviews {
  private readonly answers = new Map<string, { allowed: Promise<boolean>; until: number }>();

  constructor(
    private readonly upstream: Upstream,
    private readonly ttlMs: number,
  ) {}

  /** Whether the apiserver allows the holder of `authorization` to do this; false when the review fails. */
  allowed(authorization: string, attrs: ResourceAttributes): Promise<boolean> {
    const now = Date.now();
    const key = createHash('sha256').update(authorization).update('\0' + JSON.stringify(attrs)).digest('base64');
    const known = this.answers.get(key);
    if (known && known.until > now) return known.allowed;
    if (this.answers.size >= MAX_ENTRIES) {
      for (const [k, v] of this.answers) if (v.until <= now) this.answers.delete(k);
      if (this.answers.size >= MAX_ENTRIES) this.answers.clear();
    }
    const allowed = this.review(authorization, attrs).catch(() => false);
    this.answers.set(key, { allowed, until: now + this.ttlMs });
    // A failed review is not remembered: the next request asks again.
    void allowed.then((ok) => {
      if (!ok) this.answers.delete(key);
    });
    return allowed;
  }

  private async review(authorization: string, attrs: ResourceAttributes): Promise<boolean> {
    const url = new URL(this.upstream.url.pathname.replace(/\/$/, '') + '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', this.upstream.url);
    const body = JSON.stringify({
      kind: 'SelfSubjectAccessReview',
      apiVersion: 'authorization.k8s.io/v1',
      spec: { resourceAttributes: { ...attrs, ...(attrs.name ? {} : { name: undefined }), ...(attrs.namespace ? {} : { namespace: undefined }) } },
    });
    const res = await request(url, {
      method: 'POST',
      // The clients' dispatcher presents no credentials of poolview's: the review is the client's own.
      dispatcher: this.upstream.clientDispatcher as Dispatcher,
      headers: { authorization, 'content-type': 'application/json', accept: 'application/json', 'user-agent': 'poolview' },
      body,
      signal: AbortSignal.timeout(REVIEW_TIMEOUT_MS),
    });
    const text = await readAll(res.body, 1024 * 1024);
    if (res.statusCode !== 201 && res.statusCode !== 200) return false;
    return (JSON.parse(text) as { status?: { allowed?: boolean } }).status?.allowed === true;
  }
}
