// metav1.Status failure bodies, as the apiserver writes them: the one builder for every error
// poolview answers itself (proxy, view engine, upgrade tunnels).

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
}

export function statusObject(code: number, reason: string, message: string, details?: StatusDetails): object {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code };
}

export function statusBody(code: number, reason: string, message: string, details?: StatusDetails): string {
  return JSON.stringify(statusObject(code, reason, message, details));
}
