// `poolview view`: what one node's component sees through poolview, and why.
//
// Read-only, against any cluster and without a running poolview: starts the same scope sources the
// proxy uses (for the given node), LISTs Services and EndpointSlices once with poolview's own
// credentials, applies the filters that target the component, and reports each Service and endpoint
// the component does not see, with the filter and the annotation value or pool behind it, and each
// object a filter rewrites (the kubelet's view of default/kubernetes, its Pods, kube-proxy's config).
// The explanations are written here, next to (not inside) the filters: the decision always comes
// from the filters themselves; an explanation that disagrees with it falls back to a plain statement.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { pino, type Logger } from 'pino';
import { request } from 'undici';
import {
  ANNOTATION_DISCARD,
  ANNOTATION_NODEPORT_AUTO_LISTEN,
  ANNOTATION_NODEPORT_LISTEN,
  ANNOTATION_TOPOLOGY_KEYS,
  GATE_NODEPORT_AUTO_LISTEN,
  LABEL_SERVICE_NAME,
  TOPOLOGY_HOSTNAME,
  TOPOLOGY_NODEPOOL,
  TOPOLOGY_ZONE,
  annotation,
  label,
} from '../../filters/annotations.js';
import { enabledFilters, type WorkingMode } from '../../filters/index.js';
import { applyChain, type Filter, type KubeObject, type Scope } from '../../filters/types.js';
import { DEFAULTS, UsageError, describeParseError, checkFilterOptions, parseBool, parseFeatureGates, parsePort, proxyHost } from '../options.js';
import { Revisions } from '../revisions.js';
import { ScopeSources } from '../scope/sources.js';
import { Targeting, isNeverFiltered, normaliseComponent } from '../targeting.js';
import type { Upstream } from '../types.js';
import { UpstreamConfigError, upstreamFromKubeconfig } from '../upstream.js';

export const HELP = `Usage: poolview view --node NAME [options]

Shows what a node's component (kube-proxy by default) sees through poolview: which Services and
EndpointSlice endpoints are in its view, and for each one left out, which filter removed it and why
(the annotation value, the node's pool, the endpoint's node and pool); and each object a filter
rewrites for it, with the change (kubelet: default/kubernetes, the node's Pods, kube-system
ConfigMaps; kube-proxy: the default/kubernetes EndpointSlice).

Read-only. Needs no running poolview: it reads the cluster with the given credentials (list/watch of
services, endpointslices, nodes, nodepools and the yurt-hub-cfg ConfigMap) and applies the same
filters and the same yurt-hub-cfg targeting as the proxy.

Options:
  --node NAME              node whose view to show (default: $NODE_NAME)
  --component NAME         client component, as named by its User-Agent (default: kube-proxy),
                           e.g. coredns, cilium-agent
  --nodepool-name POOL     the node's pool, as poolview's --nodepool-name (default: the Node's
                           apps.openyurt.io/nodepool label or NodePool membership)
  --kubeconfig PATH        kubeconfig to use (default: $KUBECONFIG, else the in-cluster config,
                           else ~/.kube/config)
  --context NAME           kubeconfig context to use (default: its current-context)
  --configmap-name NAME    ConfigMap that adds components to filters (default: ${DEFAULTS.configMapName})
  --configmap-namespace NS namespace of that ConfigMap (default: ${DEFAULTS.configMapNamespace})
  --feature-gates GATES    as given to the poolview DaemonSet, e.g. NodePortAutoListen=true
  --bind-address, --secure-port, --enable-dummy-if, --dummy-if-ip, --disabled-filters,
  --working-mode           as given to the poolview DaemonSet (defaults as poolview's)
  -o, --output FORMAT      table (default) or json
  -h, --help               show this help

Exit status: 0 shown, 1 the cluster could not be read, 2 invalid invocation.
`;

const SYNC_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 30_000;
const LIST_PAGE = 500;

export interface ViewArgs {
  node: string;
  component: string;
  nodePoolName?: string;
  kubeconfig?: string;
  context?: string;
  configMapName: string;
  configMapNamespace: string;
  featureGates: Record<string, boolean>;
  output: 'table' | 'json';
  help: boolean;
  bindAddress: string;
  securePort: number;
  enableDummyIf: boolean;
  dummyIfIp?: string;
  disabledFilters: string[];
  workingMode: WorkingMode;
}

const VIEW_FLAGS = [
  'node',
  'node-name',
  'component',
  'nodepool-name',
  'kubeconfig',
  'context',
  'configmap-name',
  'configmap-namespace',
  'feature-gates',
  'output',
  'bind-address',
  'secure-port',
  'enable-dummy-if',
  'dummy-if-ip',
  'disabled-filters',
  'working-mode',
] as const;
type ValueFlag = (typeof VIEW_FLAGS)[number];

/** Parses `poolview view` arguments (node:util parseArgs, as the main command); throws UsageError. */
export function parseViewArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ViewArgs {
  const options: ParseArgsConfig['options'] = { help: { type: 'boolean', short: 'h' } };
  for (const flag of VIEW_FLAGS) options[flag] = { type: 'string', ...(flag === 'output' ? { short: 'o' } : {}) };
  let parsed: Record<string, string | boolean | undefined>;
  try {
    parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>;
  } catch (err) {
    throw new UsageError(describeParseError(err));
  }
  const values = new Map<ValueFlag, string>();
  for (const flag of VIEW_FLAGS) if (typeof parsed[flag] === 'string') values.set(flag === 'node-name' ? 'node' : flag, parsed[flag] as string);
  const help = parsed.help === true;
  if (help) return { ...emptyArgs(), help };

  const node = (values.get('node') ?? env.NODE_NAME ?? '').trim();
  if (!node) throw new UsageError('--node is required');
  const component = normaliseComponent(values.get('component') ?? 'kube-proxy');
  if (!component) throw new UsageError('--component must name a component, e.g. kube-proxy');
  const output = values.get('output') ?? 'table';
  if (output !== 'table' && output !== 'json') throw new UsageError(`--output: "${output}" is not one of table, json`);
  const kubeconfig = values.get('kubeconfig');
  if (kubeconfig === '') throw new UsageError('--kubeconfig needs a path');
  const context = values.get('context');
  if (context === '') throw new UsageError('--context needs a name');
  const proxy = {
    bindAddress: values.get('bind-address') || DEFAULTS.bindAddress,
    securePort: parsePort(values.get('secure-port') ?? String(DEFAULTS.securePort), '--secure-port'),
    enableDummyIf: parseBool(values.get('enable-dummy-if') ?? 'false', '--enable-dummy-if'),
    dummyIfIp: values.get('dummy-if-ip') || undefined,
    disabledFilters: (values.get('disabled-filters') ?? '').split(',').map((v) => v.trim()).filter((v) => v !== ''),
    workingMode: (values.get('working-mode') || DEFAULTS.workingMode) as WorkingMode,
  };
  checkFilterOptions(proxy);
  return {
    ...proxy,
    node,
    component,
    nodePoolName: values.get('nodepool-name')?.trim() || undefined,
    kubeconfig,
    context,
    configMapName: values.get('configmap-name') || DEFAULTS.configMapName,
    configMapNamespace: values.get('configmap-namespace') || DEFAULTS.configMapNamespace,
    featureGates: parseFeatureGates(values.get('feature-gates') ?? ''),
    output,
    help: false,
  };
}

function emptyArgs(): ViewArgs {
  return {
    node: '',
    component: 'kube-proxy',
    configMapName: DEFAULTS.configMapName,
    configMapNamespace: DEFAULTS.configMapNamespace,
    featureGates: {},
    output: 'table',
    help: false,
    bindAddress: DEFAULTS.bindAddress,
    securePort: DEFAULTS.securePort,
    enableDummyIf: false,
    disabledFilters: [],
    workingMode: DEFAULTS.workingMode,
  };
}

/** --kubeconfig, else $KUBECONFIG (first existing entry), else in-cluster, else ~/.kube/config. */
export function kubeconfigPath(flag: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  if (flag) return flag;
  const fromEnv = (env.KUBECONFIG ?? '').split(delimiter).filter(Boolean);
  if (fromEnv.length > 0) return fromEnv.find((p) => existsSync(p)) ?? fromEnv[0];
  if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT) return undefined;
  const home = join(env.HOME || homedir(), '.kube', 'config');
  return existsSync(home) ? home : undefined;
}

// ---- the report -------------------------------------------------------------------------------------

export interface ServiceView {
  namespace: string;
  name: string;
  type: string;
  visible: boolean;
  reason?: string;
}

export interface RemovedEndpoint {
  ip: string;
  node: string | null;
  reason: string;
}

export interface EndpointSliceView {
  namespace: string;
  name: string;
  service: string | null;
  kept: string[];
  removed: RemovedEndpoint[];
  /** Why a targeted slice was left unchanged when its Service asks for topology (fail-open cases). */
  note?: string;
}

/** An object a filter rewrites for the component (it stays in view, changed). */
export interface ChangedObject {
  resource: string;
  namespace: string;
  name: string;
  filter: string;
  change: string;
}

/** The resources whose filters the report shows. */
const REPORTED = ['services', 'endpointslices', 'pods', 'configmaps'] as const;

export interface ViewReport {
  node: string;
  pool: string | null;
  component: string;
  /** Where in-cluster clients are sent ("host:port"), null when poolview has no address for them. */
  proxyAddress: string | null;
  /** Filters applied to this component's LISTs, in chain order. */
  filters: Record<(typeof REPORTED)[number], string[]>;
  services: ServiceView[];
  endpointSlices: EndpointSliceView[];
  changed: ChangedObject[];
}

const quote = (value: string) => JSON.stringify(value);

function poolOfText(scope: Scope, node: string | undefined): string {
  if (node === undefined) return 'no node';
  const pool = scope.poolOf(node);
  return pool ? `${node} (pool ${pool})` : `${node} (in no pool)`;
}

/** nodeportisolation's verdict on `listen` for `pool`, and which entry decided it (same rules as the filter). */
export function listenVerdict(listen: string, pool: string): { listens: boolean; why: string } {
  let star = false;
  for (const raw of listen.split(',')) {
    const entry = raw.trim();
    if (entry === pool) return { listens: true, why: `enables pool ${pool}` };
    if (entry === '-' + pool) return { listens: false, why: `disables pool ${pool}` };
    if (entry === '*') star = true;
  }
  return star ? { listens: true, why: `enables every pool (*), ${pool} included` } : { listens: false, why: `does not enable pool ${pool}` };
}

/**
 * Why nodeportisolation keeps or drops a Service for this node; undefined when the filter does not
 * look at it (not NodePort/LoadBalancer, no listen annotations). `visible` is the filter's own verdict.
 */
export function explainNodePort(service: KubeObject, scope: Scope, visible: boolean): string | undefined {
  const type = serviceType(service);
  if (type !== 'NodePort' && type !== 'LoadBalancer') return undefined;
  const listen = annotation(service, ANNOTATION_NODEPORT_LISTEN);
  const autoListen = annotation(service, ANNOTATION_NODEPORT_AUTO_LISTEN);
  if (listen === undefined && autoListen === undefined) return undefined;
  const pool = scope.nodePool;
  const explained = (text: string, expectVisible: boolean) =>
    expectVisible === visible ? `nodeportisolation: ${text}` : fallback('nodeportisolation', visible);
  if (!pool) return explained(`node ${scope.nodeName} is in no pool, so it listens on every NodePort`, true);
  if (listen !== undefined) {
    const verdict = listenVerdict(listen, pool);
    return explained(`${ANNOTATION_NODEPORT_LISTEN}=${quote(listen)} ${verdict.why}`, verdict.listens);
  }
  const auto = `${ANNOTATION_NODEPORT_AUTO_LISTEN}=${quote(autoListen!)}`;
  if (autoListen!.trim().toLowerCase() !== 'true') return undefined;
  if (!scope.gate(GATE_NODEPORT_AUTO_LISTEN)) return explained(`${auto} is ignored: feature gate ${GATE_NODEPORT_AUTO_LISTEN} is off`, true);
  const { namespace, name } = service.metadata;
  const pools = namespace && name ? scope.endpointPools(namespace, name) : undefined;
  if (pools === undefined) return explained(`${auto}: the pools of its endpoints are not known yet, so it stays`, true);
  const list = [...pools].sort();
  const where = list.length === 0 ? 'no pool' : `pool${list.length > 1 ? 's' : ''} ${list.join(', ')}`;
  return pools.has(pool)
    ? explained(`${auto}: its ready endpoints run in ${where}, pool ${pool} included`, true)
    : explained(`${auto}: its ready endpoints run in ${where}, not in pool ${pool}`, false);
}

/** Why servicetopology removed an endpoint on `node` from this node's view. */
export function explainTopologyRemoval(service: KubeObject | undefined, scope: Scope, ip: string, node: string | undefined): string {
  const keys = service ? annotation(service, ANNOTATION_TOPOLOGY_KEYS) : undefined;
  const where = node === undefined ? `${ip} names no node` : `${ip} is on ${poolOfText(scope, node)}`;
  const setting = `${ANNOTATION_TOPOLOGY_KEYS}=${keys}`;
  if (keys === TOPOLOGY_NODEPOOL || keys === TOPOLOGY_ZONE) {
    const pool = scope.nodePool;
    if (!pool) return `servicetopology: ${setting} and node ${scope.nodeName} is in no pool, so only endpoints on ${scope.nodeName} are kept; ${where}`;
    return `servicetopology: ${setting} keeps endpoints on pool ${pool} nodes; ${where}`;
  }
  if (keys === TOPOLOGY_HOSTNAME) return `servicetopology: ${setting} keeps endpoints on node ${scope.nodeName}; ${where}`;
  return `servicetopology: removed; ${where}`;
}

/** For a slice servicetopology left whole although its Service asks for topology: why (fail-open). */
export function explainTopologyUnchanged(slice: KubeObject, scope: Scope): string | undefined {
  const serviceName = label(slice, LABEL_SERVICE_NAME);
  if (!serviceName) return undefined;
  const service = scope.service(slice.metadata.namespace ?? '', serviceName);
  if (!service) return `servicetopology: Service ${slice.metadata.namespace}/${serviceName} not found; endpoints unchanged`;
  const keys = annotation(service, ANNOTATION_TOPOLOGY_KEYS);
  if (keys === TOPOLOGY_NODEPOOL || keys === TOPOLOGY_ZONE) {
    const pool = scope.nodePool;
    if (pool && scope.poolMembers(pool) === undefined) {
      return `servicetopology: ${ANNOTATION_TOPOLOGY_KEYS}=${keys} but the members of pool ${pool} are not known (no NodePool ${pool}); endpoints unchanged`;
    }
  }
  return undefined;
}

function fallback(filter: string, visible: boolean): string {
  return visible ? `${filter}: kept` : `${filter}: not in this node's view`;
}

function serviceType(service: KubeObject): string {
  const spec = service.spec as { type?: unknown } | undefined;
  return typeof spec?.type === 'string' && spec.type !== '' ? spec.type : 'ClusterIP';
}

function endpointsOf(slice: KubeObject | null): unknown[] {
  return slice && Array.isArray(slice.endpoints) ? slice.endpoints : [];
}

function addressesOf(endpoint: unknown): string[] {
  const addresses = (endpoint as { addresses?: unknown } | null)?.addresses;
  return Array.isArray(addresses) ? addresses.filter((a): a is string => typeof a === 'string') : [];
}

function nodeOf(endpoint: unknown): string | undefined {
  const e = endpoint as { nodeName?: unknown; topology?: Record<string, unknown> } | null;
  if (typeof e?.nodeName === 'string' && e.nodeName !== '') return e.nodeName;
  const host = e?.topology?.['kubernetes.io/hostname'];
  return typeof host === 'string' && host !== '' ? host : undefined;
}

/** Endpoints of `before` missing from `after`, compared by content (a filter may copy what it keeps). */
function removedEndpoints(before: readonly unknown[], after: readonly unknown[]): unknown[] {
  const left = new Map<string, number>();
  for (const e of after) {
    const key = JSON.stringify(e);
    left.set(key, (left.get(key) ?? 0) + 1);
  }
  const removed: unknown[] = [];
  for (const e of before) {
    const key = JSON.stringify(e);
    const n = left.get(key) ?? 0;
    if (n > 0) left.set(key, n - 1);
    else removed.push(e);
  }
  return removed;
}

function typed(item: KubeObject, kind: string, apiVersion: string): KubeObject {
  return item.kind ? item : { ...item, kind, apiVersion };
}

const byKey = (a: { namespace: string; name: string }, b: { namespace: string; name: string }) =>
  a.namespace === b.namespace ? (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) : a.namespace < b.namespace ? -1 : 1;

export function viewService(item: KubeObject, chain: readonly Filter[], scope: Scope): ServiceView {
  const service = typed(item, 'Service', 'v1');
  const out = applyChain(chain, service, scope);
  const view: ServiceView = {
    namespace: service.metadata.namespace ?? '',
    name: service.metadata.name ?? '',
    type: serviceType(service),
    visible: out !== null,
  };
  // Walk the chain to name the filter that decided (a drop ends it).
  let current: KubeObject = service;
  for (const filter of chain) {
    const next = filter.apply(current, scope);
    const said =
      filter.name === 'nodeportisolation'
        ? explainNodePort(current, scope, next !== null)
        : next === null
          ? (filter.name === 'discardcloudservice' ? explainDiscard(current) : undefined) ?? fallback(filter.name, false)
          : undefined;
    if (said !== undefined && (next === null || view.reason === undefined)) view.reason = said;
    if (next === null) break;
    current = next;
  }
  return view;
}

export function viewEndpointSlice(item: KubeObject, chain: readonly Filter[], scope: Scope): EndpointSliceView {
  const slice = typed(item, 'EndpointSlice', 'discovery.k8s.io/v1');
  const out = applyChain(chain, slice, scope);
  const serviceName = label(slice, LABEL_SERVICE_NAME) ?? null;
  const namespace = slice.metadata.namespace ?? '';
  const service = serviceName ? scope.service(namespace, serviceName) : undefined;

  // Which filter removed each endpoint: step through the chain (endpoints keyed by content).
  const removedBy = new Map<string, string>();
  let current: KubeObject = slice;
  for (const filter of chain) {
    const next = filter.apply(current, scope);
    const gone = next === null ? endpointsOf(current) : removedEndpoints(endpointsOf(current), endpointsOf(next));
    for (const e of gone) if (!removedBy.has(JSON.stringify(e))) removedBy.set(JSON.stringify(e), filter.name);
    if (next === null) break;
    current = next;
  }

  const kept = endpointsOf(out).flatMap(addressesOf);
  const removed: RemovedEndpoint[] = [];
  for (const e of removedEndpoints(endpointsOf(slice), endpointsOf(out))) {
    const filter = removedBy.get(JSON.stringify(e)) ?? chain.at(-1)?.name ?? 'filter';
    const node = nodeOf(e);
    for (const ip of addressesOf(e)) {
      const reason =
        out === null
          ? `${filter}: the EndpointSlice is not in this node's view`
          : filter === 'servicetopology'
            ? explainTopologyRemoval(service, scope, ip, node)
            : filter === 'forwardkubesvctraffic'
              ? `forwardkubesvctraffic: the kubernetes Service goes to poolview at ${addressText(scope)} instead`
              : `${filter}: removed; ${ip} is on ${poolOfText(scope, node)}`;
      removed.push({ ip, node: node ?? null, reason });
    }
  }
  const view: EndpointSliceView = { namespace, name: slice.metadata.name ?? '', service: serviceName, kept, removed };
  if (removed.length === 0 && chain.some((f) => f.name === 'servicetopology')) {
    const note = explainTopologyUnchanged(slice, scope);
    if (note && service && annotation(service, ANNOTATION_TOPOLOGY_KEYS)) view.note = note;
  }
  return view;
}

/** Why discardcloudservice drops a Service. */
function explainDiscard(service: KubeObject): string | undefined {
  if (service.metadata.name === 'x-tunnel-server-internal-svc') return 'discardcloudservice: the tunnel server\'s internal Service is for the cloud';
  const discard = annotation(service, ANNOTATION_DISCARD);
  return discard === undefined ? undefined : `discardcloudservice: LoadBalancer with ${ANNOTATION_DISCARD}=${quote(discard)} is for the cloud`;
}

function addressText(scope: Scope): string {
  const a = scope.proxyAddress;
  return a ? `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.securePort}` : '<none>';
}

function httpsPortOf(ports: unknown): string {
  const https = Array.isArray(ports) ? ports.find((p) => (p as { name?: unknown })?.name === 'https') : undefined;
  return String((https as { port?: unknown } | undefined)?.port ?? '<none>');
}

/** What a filter changed in an object, in one line (masterservice, forwardkubesvctraffic, inclusterconfig, serviceenvupdater). */
export function describeChange(filter: string, before: KubeObject, after: KubeObject): string {
  const spec = (o: KubeObject) => (o.spec ?? {}) as Record<string, unknown>;
  switch (filter) {
    case 'masterservice': {
      const ips = (o: KubeObject) => ipList(Array.isArray(spec(o).clusterIPs) ? (spec(o).clusterIPs as string[]) : [String(spec(o).clusterIP)]);
      return `cluster IP ${ips(before)} → ${ips(after)}, port https ${httpsPortOf(spec(before).ports)} → ${httpsPortOf(spec(after).ports)}: pods get KUBERNETES_SERVICE_HOST/PORT of poolview`;
    }
    case 'forwardkubesvctraffic':
      return `endpoints ${ipList(endpointsOf(before).flatMap(addressesOf))} → ${ipList(endpointsOf(after).flatMap(addressesOf))}, port https ${httpsPortOf(before.ports)} → ${httpsPortOf(after.ports)}: the kubernetes Service goes to poolview`;
    case 'inclusterconfig':
      return 'config.conf: kubeconfig line commented out, so kube-proxy uses in-cluster config (poolview)';
    case 'serviceenvupdater': {
      const envs = (o: KubeObject) => (Array.isArray(spec(o).containers) ? (spec(o).containers as Array<{ name?: string; env?: Array<{ name?: string; value?: string }> }>) : []);
      const after_ = envs(after);
      const changes = envs(before).flatMap((c, i) =>
        (c.env ?? []).flatMap((e, j) => {
          const next = after_[i]?.env?.[j]?.value;
          return next !== e.value ? [`${c.name}: ${e.name} ${e.value ?? '<unset>'} → ${next}`] : [];
        }),
      );
      return changes.join('; ');
    }
    default:
      return `changed by ${filter}`;
  }
}

/** The objects a chain rewrites (kept, different), with the filter and the change. */
function changedObjects(resource: string, items: readonly KubeObject[], chain: readonly Filter[], scope: Scope): ChangedObject[] {
  const out: ChangedObject[] = [];
  for (const item of items) {
    let current = item;
    for (const filter of chain) {
      const next = filter.apply(current, scope);
      if (next === null) break;
      if (next !== current) {
        const { namespace = '', name = '' } = item.metadata;
        out.push({ resource, namespace, name, filter: filter.name, change: describeChange(filter.name, current, next) });
      }
      current = next;
    }
  }
  return out.sort((a, b) => byKey(a, b) || (a.resource < b.resource ? -1 : a.resource > b.resource ? 1 : 0));
}

export function buildReport(input: {
  node: string;
  component: string;
  scope: Scope;
  targeting: Targeting;
  services: readonly KubeObject[];
  endpointSlices: readonly KubeObject[];
  pods?: readonly KubeObject[];
  configMaps?: readonly KubeObject[];
}): ViewReport {
  const { scope, targeting, component } = input;
  const chain = (resource: string) => targeting.filtersFor(component, resource, 'list');
  const typedAll = (items: readonly KubeObject[] | undefined, kind: string, apiVersion: string) => (items ?? []).map((i) => typed(i, kind, apiVersion));
  const objects: Record<(typeof REPORTED)[number], KubeObject[]> = {
    services: typedAll(input.services, 'Service', 'v1'),
    endpointslices: typedAll(input.endpointSlices, 'EndpointSlice', 'discovery.k8s.io/v1'),
    pods: typedAll(input.pods, 'Pod', 'v1'),
    configmaps: typedAll(input.configMaps, 'ConfigMap', 'v1'),
  };
  return {
    node: input.node,
    pool: scope.nodePool ?? null,
    component,
    proxyAddress: scope.proxyAddress ? addressText(scope) : null,
    filters: Object.fromEntries(REPORTED.map((r) => [r, chain(r).map((f) => f.name)])) as ViewReport['filters'],
    services: objects.services.map((s) => viewService(s, chain('services'), scope)).sort(byKey),
    endpointSlices: objects.endpointslices.map((s) => viewEndpointSlice(s, chain('endpointslices'), scope)).sort(byKey),
    changed: REPORTED.flatMap((r) => changedObjects(r, objects[r], chain(r), scope)),
  };
}

// ---- table output -----------------------------------------------------------------------------------

function columns(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]))).join('   ').trimEnd()).join('\n');
}

function ipList(ips: readonly string[], max = 4): string {
  if (ips.length === 0) return '<none>';
  return ips.length <= max ? ips.join(',') : `${ips.slice(0, max).join(',')},… (+${ips.length - max})`;
}

export function formatTable(report: ViewReport): string {
  const out: string[] = [];
  out.push(`NODE ${report.node}   POOL ${report.pool ?? '<none>'}   COMPONENT ${report.component}`);
  const f = report.filters;
  if (REPORTED.every((r) => f[r].length === 0)) {
    out.push(`No filter targets ${report.component}: it sees Services, EndpointSlices, Pods and ConfigMaps unfiltered.`);
  } else {
    // Services and EndpointSlices always; Pods and ConfigMaps where a filter targets them.
    const shown = REPORTED.filter((r) => r === 'services' || r === 'endpointslices' || f[r].length > 0);
    out.push(`FILTERS   ${shown.map((r) => `${r}: ${f[r].join(', ') || '<none>'}`).join('   ')}`);
  }

  const visible = report.services.filter((s) => s.visible).length;
  out.push('', `SERVICES (${visible} of ${report.services.length} visible)`);
  out.push(
    columns([
      ['NAMESPACE', 'NAME', 'TYPE', 'VISIBLE', 'REASON'],
      ...report.services.map((s) => [s.namespace, s.name, s.type, s.visible ? 'yes' : 'no', s.reason ?? '']),
    ]),
  );

  const removedCount = report.endpointSlices.reduce((n, s) => n + s.removed.length, 0);
  const touched = report.endpointSlices.filter((s) => s.removed.length > 0).length;
  out.push('', `ENDPOINTSLICES (${removedCount} endpoint${removedCount === 1 ? '' : 's'} removed from ${touched} of ${report.endpointSlices.length})`);
  out.push(
    columns([
      ['NAMESPACE', 'NAME', 'SERVICE', 'KEPT', 'REMOVED'],
      ...report.endpointSlices.map((s) => [s.namespace, s.name, s.service ?? '<none>', ipList(s.kept), s.removed.length === 0 ? '-' : ipList(s.removed.map((r) => r.ip))]),
    ]),
  );
  const details = report.endpointSlices.flatMap((s) => [
    ...s.removed.map((r) => [`${s.namespace}/${s.name}`, r.ip, r.reason]),
    ...(s.note ? [[`${s.namespace}/${s.name}`, '', s.note]] : []),
  ]);
  if (details.length > 0) out.push('', 'REMOVED ENDPOINTS', columns([['ENDPOINTSLICE', 'IP', 'REASON'], ...details]));
  if (report.changed.length > 0) {
    out.push('', `CHANGED OBJECTS (poolview's address for in-cluster clients: ${report.proxyAddress ?? '<none>'})`);
    out.push(columns([['RESOURCE', 'NAMESPACE', 'NAME', 'FILTER', 'CHANGE'], ...report.changed.map((c) => [c.resource, c.namespace, c.name, c.filter, c.change])]));
  }
  return out.join('\n') + '\n';
}

// ---- cluster access ---------------------------------------------------------------------------------

/** A failure reading the cluster: the CLI prints the message alone and exits 1. */
class ClusterError extends Error {}

function causeText(err: unknown): string {
  const e = err as { message?: string; code?: string; cause?: unknown; errors?: unknown[] };
  if (e?.cause) return causeText(e.cause);
  if (e?.message) return e.message;
  if (Array.isArray(e?.errors) && e.errors.length > 0) return causeText(e.errors[0]);
  return e?.code ?? String(err);
}

function statusMessage(text: string): string {
  try {
    const status = JSON.parse(text) as { message?: string; reason?: string };
    if (status.message) return status.message;
    if (status.reason) return status.reason;
  } catch {
    // not a Status
  }
  return text.trim().slice(0, 200) || '(empty body)';
}

/** LISTs a collection (all pages, or only the first with `onePage`) with poolview's own credentials. */
async function listAll(upstream: Upstream, path: string, query: Record<string, string> = {}, onePage = false): Promise<KubeObject[]> {
  const items: KubeObject[] = [];
  let continueToken: string | undefined;
  do {
    const url = new URL(path, upstream.url);
    for (const [k, v] of Object.entries({ ...query, limit: String(onePage ? 1 : LIST_PAGE) })) url.searchParams.set(k, v);
    if (continueToken) url.searchParams.set('continue', continueToken);
    let res;
    try {
      res = await request(url, {
        dispatcher: upstream.ownDispatcher,
        headers: { accept: 'application/json', 'user-agent': 'poolview-view', ...upstream.ownHeaders() },
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (err) {
      throw new ClusterError(`cannot reach the apiserver at ${upstream.url.origin}: ${causeText(err)}`);
    }
    const text = await res.body.text();
    if (res.statusCode !== 200) {
      throw new ClusterError(`list ${path}: HTTP ${res.statusCode} from ${upstream.url.origin}: ${statusMessage(text)}`);
    }
    const list = JSON.parse(text) as { metadata?: { continue?: string }; items?: KubeObject[] };
    items.push(...(list.items ?? []));
    continueToken = onePage ? undefined : list.metadata?.continue || undefined;
  } while (continueToken);
  return items;
}

const AUTH_FAILURE = /HTTP (401|403)\b/;

/** Waits for the scope sources; fails early when one is refused (401/403) rather than retrying for 30 s. */
async function waitSynced(scope: ScopeSources, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!scope.synced) {
    const refused = scope.readiness().find((r) => !r.ok && r.detail && AUTH_FAILURE.test(r.detail));
    if (refused) throw new ClusterError(`${refused.name}: ${readinessDetail(refused.detail!)}`);
    if (Date.now() >= deadline) {
      const pending = scope
        .readiness()
        .filter((r) => !r.ok)
        .map((r) => (r.detail ? `${r.name} (${readinessDetail(r.detail)})` : r.name));
      throw new ClusterError(`scope sources not synced within ${Math.round(timeoutMs / 1000)}s: ${pending.join(', ')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  // Endpoint pools (auto-listen) are published on a timer right after the sources sync.
  await new Promise((r) => setTimeout(r, 20));
}

/** `list /api/v1/nodes: HTTP 403: {Status JSON}` → `list /api/v1/nodes: HTTP 403: <message>`. */
function readinessDetail(detail: string): string {
  const m = /^(.*?HTTP \d+: )(.*)$/s.exec(detail);
  if (!m) return detail;
  const message = /"message":"((?:[^"\\]|\\.)*)"/.exec(m[2]);
  return m[1] + (message ? JSON.parse(`"${message[1]}"`) : m[2]);
}

export interface ViewIo {
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown };
  /** The CLI's environment (NODE_NAME, KUBECONFIG, ...); default process.env. */
  env?: Record<string, string | undefined>;
}

export interface ViewDeps {
  /** An apiserver to use instead of the kubeconfig (tests); the caller keeps ownership. */
  upstream?: Upstream;
  /** How long to wait for the scope sources (default 30 s). */
  syncTimeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

function silentLogger(): Logger {
  return pino({ level: 'silent' }, { write() {} });
}

export async function run(argv: string[], io: ViewIo = { stdout: process.stdout, stderr: process.stderr }, deps: ViewDeps = {}): Promise<number> {
  const env = deps.env ?? io.env ?? process.env;
  let args: ViewArgs;
  try {
    args = parseViewArgs(argv, env);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.stderr.write(`poolview view: ${err.message}\nRun 'poolview view --help' for usage.\n`);
    return 2;
  }
  if (args.help) {
    io.stdout.write(HELP);
    return 0;
  }

  let upstream = deps.upstream;
  let owned: { close(): Promise<void> } | undefined;
  if (!upstream) {
    try {
      const built = await upstreamFromKubeconfig(kubeconfigPath(args.kubeconfig, env), args.context);
      upstream = built;
      owned = built;
    } catch (err) {
      io.stderr.write(`poolview view: ${(err as Error).message}\n`);
      return err instanceof UpstreamConfigError ? 2 : 1;
    }
  }

  const targeting = new Targeting(enabledFilters(args.disabledFilters, args.workingMode));
  const host = proxyHost(args);
  const scope = new ScopeSources({
    proxyAddress: host === undefined ? undefined : { host, securePort: args.securePort },
    upstream,
    nodeName: args.node,
    nodePoolName: args.nodePoolName,
    configMap: { namespace: args.configMapNamespace, name: args.configMapName },
    featureGates: args.featureGates,
    targeting,
    revisions: new Revisions(),
    log: silentLogger(),
    autoListenDebounceMs: 0,
  });
  try {
    // One cheap request first: an unreachable or refusing apiserver fails now, not after 30 s.
    await listAll(upstream, '/api/v1/services', {}, true);
    scope.start();
    await waitSynced(scope, deps.syncTimeoutMs ?? SYNC_TIMEOUT_MS);
    const targeted = (resource: string) => targeting.filtersFor(args.component, resource, 'list').length > 0;
    const [nodes, services, endpointSlices, pods, configMaps] = await Promise.all([
      listAll(upstream, '/api/v1/nodes', { fieldSelector: `metadata.name=${args.node}` }),
      listAll(upstream, '/api/v1/services'),
      listAll(upstream, '/apis/discovery.k8s.io/v1/endpointslices'),
      // As the kubelet reads them: its node's Pods; of the ConfigMaps, kube-system's (kube-proxy's).
      targeted('pods') ? listAll(upstream, '/api/v1/pods', { fieldSelector: `spec.nodeName=${args.node}` }) : [],
      targeted('configmaps') ? listAll(upstream, '/api/v1/namespaces/kube-system/configmaps') : [],
    ]);
    if (nodes.length === 0) io.stderr.write(`warning: node ${quote(args.node)} not found in the cluster\n`);
    if (isNeverFiltered(args.component)) io.stderr.write(`warning: ${args.component} is never filtered by poolview\n`);
    for (const warning of targeting.configWarnings) io.stderr.write(`warning: ${warning}\n`);
    const report = buildReport({ node: args.node, component: args.component, scope, targeting, services, endpointSlices, pods, configMaps });
    io.stdout.write(args.output === 'json' ? JSON.stringify(report, null, 2) + '\n' : formatTable(report));
    return 0;
  } catch (err) {
    // One line, no stack: ClusterError messages are written for this; anything else is still a
    // failure to read the cluster (e.g. a body that is not JSON).
    io.stderr.write(`poolview view: ${err instanceof ClusterError ? err.message : causeText(err)}\n`);
    return 1;
  } finally {
    scope.stop();
    await owned?.close().catch(() => {});
  }
}
