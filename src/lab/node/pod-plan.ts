/**
 * What a kubelet gives a container, computed from the pod as the API server
 * stores it (after admission and injection) and the objects it references:
 * the argv (the image's ENTRYPOINT and CMD, replaced by the container's
 * `command` and `args`, with `$(VAR)` references expanded), the environment
 * (`value`, `valueFrom` fieldRef / resourceFieldRef / configMapKeyRef /
 * secretKeyRef, `envFrom`), the mounts at the paths the image expects, and
 * its probes with Kubernetes' defaults. Pure: the lab node agent does the
 * I/O (files, tokens, namespaces, processes) from this plan.
 *
 * A container the kubelet would refuse (a missing ConfigMap or key that is
 * not optional) gets `error` in the words of the kubelet's
 * CreateContainerConfigError, and no plan.
 */
import { availableParallelism, totalmem } from 'node:os';
import type {
  V1Container,
  V1DownwardAPIVolumeFile,
  V1EnvVar,
  V1Pod,
  V1Probe,
  V1ResourceFieldSelector,
  V1Volume,
} from '@kubernetes/client-node';
import type { KnownImage } from './images.js';

/** ConfigMaps' data and Secrets' data (base64, as stored) of the pod's namespace, by name. */
export interface PodObjects {
  configMap(name: string): { data?: Record<string, string>; binaryData?: Record<string, string> } | undefined;
  secret(name: string): { data?: Record<string, string> } | undefined;
}

export interface FileItem {
  /** Path relative to the mount point. */
  path: string;
  content: Buffer;
  mode: number;
  /** The user the file belongs to (the pod's one user, for a token); default root. */
  owner?: number;
}

export interface TokenItem {
  path: string;
  audience: string | undefined;
  expirationSeconds: number;
  mode: number;
  owner?: number;
}

/** Where a mount's content comes from. */
export type MountSource =
  | {
      kind: 'files';
      files: FileItem[];
      tokens: TokenItem[];
      watch: { configMaps: string[]; secrets: string[] };
    }
  | { kind: 'emptyDir'; volume: string }
  /** A claim's volume (a StatefulSet's volumeClaimTemplates give each pod one). */
  | { kind: 'persistentVolumeClaim'; claimName: string; readOnly: boolean }
  | { kind: 'hostPath'; path: string; type: string | undefined }
  | { kind: 'csi'; driver: string; attributes: Record<string, string> };

export interface MountPlan {
  /** Path inside the container. */
  path: string;
  readOnly: boolean;
  subPath: string | undefined;
  volume: string;
  source: MountSource;
}

export type ProbeAction =
  | {
      kind: 'http';
      scheme: 'HTTP' | 'HTTPS';
      host: string | undefined;
      port: number;
      path: string;
      headers: Array<[string, string]>;
    }
  | { kind: 'tcp'; host: string | undefined; port: number }
  | { kind: 'exec'; command: string[] }
  | { kind: 'grpc'; port: number; service: string | undefined };

export interface ProbePlan {
  action: ProbeAction;
  initialDelaySeconds: number;
  periodSeconds: number;
  timeoutSeconds: number;
  successThreshold: number;
  failureThreshold: number;
}

export interface ContainerPlan {
  name: string;
  argv: string[];
  workdir: string;
  env: Array<[string, string]>;
  mounts: MountPlan[];
  readiness: ProbePlan | undefined;
  liveness: ProbePlan | undefined;
  startup: ProbePlan | undefined;
  /** securityContext runAsUser/runAsGroup (the container's, else the pod's); undefined: root. */
  user: { uid: number; gid: number } | undefined;
}

/** The user a container runs as: its securityContext's, else the pod's; a user without a group gets group 0, as from an image without one. */
export function containerUser(pod: V1Pod, c: V1Container): { uid: number; gid: number } | undefined {
  const uid = c.securityContext?.runAsUser ?? pod.spec?.securityContext?.runAsUser;
  const gid = c.securityContext?.runAsGroup ?? pod.spec?.securityContext?.runAsGroup;
  if (uid === undefined && gid === undefined) return undefined;
  return { uid: uid ?? 0, gid: gid ?? 0 };
}

export class ContainerConfigError extends Error {
  override name = 'ContainerConfigError';
}

/**
 * Kubernetes' `$(VAR)` expansion (k8s.io/kubernetes third_party expansion):
 * a defined variable is replaced, `$$` is a literal `$`, and a reference to
 * an undefined variable (or an unclosed one) stays as it was written.
 */
export function expand(input: string, vars: ReadonlyMap<string, string>): string {
  let out = '';
  for (let i = 0; i < input.length; i++) {
    const ch = input[i]!;
    if (ch !== '$' || i + 1 >= input.length) {
      out += ch;
      continue;
    }
    const next = input[i + 1]!;
    if (next === '$') {
      out += '$';
      i++;
    } else if (next === '(') {
      const close = input.indexOf(')', i + 2);
      if (close === -1) {
        out += input.slice(i);
        break;
      }
      const name = input.slice(i + 2, close);
      const value = vars.get(name);
      out += value ?? `$(${name})`;
      i = close;
    } else {
      out += ch;
    }
  }
  return out;
}

/** The pod fields a `fieldRef` may name (the downward API's env fields). */
function fieldValue(pod: V1Pod, path: string): string {
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (m) return (m[1] === 'labels' ? pod.metadata?.labels : pod.metadata?.annotations)?.[m[2]!] ?? '';
  const fields: Record<string, string | undefined> = {
    'metadata.name': pod.metadata?.name,
    'metadata.namespace': pod.metadata?.namespace,
    'metadata.uid': pod.metadata?.uid,
    'spec.nodeName': pod.spec?.nodeName,
    'spec.serviceAccountName': pod.spec?.serviceAccountName,
    'status.hostIP': pod.status?.hostIP,
    'status.podIP': pod.status?.podIP,
    'status.podIPs': pod.status?.podIPs?.map((p) => p.ip).join(','),
    'status.hostIPs': pod.status?.hostIPs?.map((p) => p.ip).join(','),
  };
  if (!(path in fields)) throw new ContainerConfigError(`unsupported fieldPath "${path}"`);
  return fields[path] ?? '';
}

const b64 = (s: string) => Buffer.from(s, 'base64').toString('utf8');

function keyOf(
  objects: PodObjects,
  kind: 'ConfigMap' | 'Secret',
  ns: string,
  name: string,
  key: string,
  optional: boolean | undefined,
): string | undefined {
  const o = kind === 'ConfigMap' ? objects.configMap(name) : objects.secret(name);
  if (!o) {
    if (optional) return undefined;
    throw new ContainerConfigError(`${kind === 'ConfigMap' ? 'configmap' : 'secret'} "${name}" not found`);
  }
  const data = (o as { data?: Record<string, string> }).data ?? {};
  if (!(key in data)) {
    if (optional) return undefined;
    throw new ContainerConfigError(`couldn't find key ${key} in ${kind} ${ns}/${name}`);
  }
  return kind === 'Secret' ? b64(data[key]!) : data[key];
}

/** The container's environment, in order, as the kubelet builds it: envFrom first, then env (later wins). */
export function containerEnv(pod: V1Pod, c: V1Container, objects: PodObjects): Array<[string, string]> {
  const ns = pod.metadata?.namespace ?? 'default';
  const vars = new Map<string, string>();
  for (const from of c.envFrom ?? []) {
    const prefix = from.prefix ?? '';
    if (from.configMapRef) {
      const cm = objects.configMap(from.configMapRef.name ?? '');
      if (!cm) {
        if (from.configMapRef.optional) continue;
        throw new ContainerConfigError(`configmap "${from.configMapRef.name}" not found`);
      }
      for (const [k, v] of Object.entries(cm.data ?? {})) vars.set(prefix + k, v);
    }
    if (from.secretRef) {
      const s = objects.secret(from.secretRef.name ?? '');
      if (!s) {
        if (from.secretRef.optional) continue;
        throw new ContainerConfigError(`secret "${from.secretRef.name}" not found`);
      }
      for (const [k, v] of Object.entries(s.data ?? {})) vars.set(prefix + k, b64(v));
    }
  }
  for (const e of c.env ?? []) {
    const v = envValue(pod, c, e, objects, ns, vars);
    if (v !== undefined) vars.set(e.name, v);
  }
  return [...vars];
}

function envValue(
  pod: V1Pod,
  c: V1Container,
  e: V1EnvVar,
  objects: PodObjects,
  ns: string,
  vars: ReadonlyMap<string, string>,
): string | undefined {
  // A value may refer to variables defined before it.
  if (e.value !== undefined) return expand(e.value, vars);
  const from = e.valueFrom;
  if (!from) return '';
  if (from.fieldRef) return fieldValue(pod, from.fieldRef.fieldPath);
  if (from.configMapKeyRef)
    return keyOf(
      objects,
      'ConfigMap',
      ns,
      from.configMapKeyRef.name ?? '',
      from.configMapKeyRef.key,
      from.configMapKeyRef.optional,
    );
  if (from.secretKeyRef)
    return keyOf(
      objects,
      'Secret',
      ns,
      from.secretKeyRef.name ?? '',
      from.secretKeyRef.key,
      from.secretKeyRef.optional,
    );
  if (from.resourceFieldRef) return resourceValue(pod, c, from.resourceFieldRef);
  return '';
}

/** A container's resource request or limit (the container named, else `c`). */
/**
 * A resourceFieldRef's value as the kubelet gives it: the quantity divided by
 * the divisor (default 1), rounded up, as an integer (`limits.memory` of 1Gi →
 * 1073741824; `limits.cpu` of 500m → 1, or 500 with divisor 1m). A limit not
 * set is the node's allocatable (here: this machine's CPUs and memory); a
 * request not set is its limit if set, else 0.
 */
function resourceValue(pod: V1Pod, c: V1Container | undefined, ref: V1ResourceFieldSelector): string {
  const all = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  const target = ref.containerName ? all.find((x) => x.name === ref.containerName) : c;
  const [kind, what] = ref.resource.split('.') as ['limits' | 'requests', string];
  const set =
    target?.resources?.[kind]?.[what] ??
    (kind === 'requests' ? target?.resources?.limits?.[what] : undefined);
  const allocatable: Record<string, number> = { cpu: availableParallelism(), memory: totalmem() };
  const value = set !== undefined ? parseQuantity(String(set)) : kind === 'limits' ? allocatable[what] : 0;
  // A divisor not set is stored as 0 by some API servers (1.29); the kubelet takes 0 as 1.
  const given = parseQuantity(String(ref.divisor ?? '1'));
  const divisor = given === 0 ? 1 : given;
  if (value === undefined || !divisor)
    throw new ContainerConfigError(
      `resourceFieldRef ${ref.resource}: not a quantity (${set ?? ''} / ${ref.divisor ?? 1})`,
    );
  return String(Math.ceil(value / divisor - 1e-9));
}

const QUANTITY_SUFFIXES: Record<string, number> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** A Kubernetes quantity ("1Gi", "500m", "2", "1e3") as a number, or undefined. */
export function parseQuantity(q: string): number | undefined {
  const m = /^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E))?$/.exec(
    q.trim(),
  );
  if (!m) return undefined;
  const n = Number(m[1]);
  if (m[2]) return n * 10 ** Number(m[2].slice(1));
  return n * QUANTITY_SUFFIXES[m[3] ?? '']!;
}

/**
 * A downward API volume file's content: what env fields give, and the
 * whole label or annotation map as the kubelet writes it (sorted
 * `key="value"` lines).
 */
function downwardField(pod: V1Pod, path: string): string {
  if (path === 'metadata.labels' || path === 'metadata.annotations') {
    const map = (path === 'metadata.labels' ? pod.metadata?.labels : pod.metadata?.annotations) ?? {};
    return Object.keys(map)
      .sort()
      .map((k) => `${k}=${JSON.stringify(map[k])}`)
      .join('\n');
  }
  return fieldValue(pod, path);
}

/** The argv: `command` replaces ENTRYPOINT (and drops CMD), `args` replaces CMD; `$(VAR)` expanded in both. */
export function containerArgv(c: V1Container, image: KnownImage, env: Array<[string, string]>): string[] {
  if (image.standIn) return image.standIn.argv;
  const vars = new Map(env);
  const entry = c.command ?? image.entrypoint;
  const cmd = c.args ?? (c.command ? [] : image.cmd);
  return [...entry, ...cmd].map((a) => expand(a, vars));
}

const DEFAULT_MODE = 0o644;

/**
 * The mode of a projected token file: the volume's defaultMode, but 0600 when
 * the kubelet hands the file to the pod's user (an fsGroup, or one runAsUser
 * for every container: its FsUserFrom, and then the file is that user's), so
 * that no other user reads the token.
 */
function tokenMode(pod: V1Pod, defaultMode: number): { mode: number; owner?: number } {
  const s = pod.spec;
  const users = [
    ...(s?.initContainers ?? []),
    ...(s?.containers ?? []),
    ...(s?.ephemeralContainers ?? []),
  ].map((c) => c.securityContext?.runAsUser ?? s?.securityContext?.runAsUser);
  const oneUser = users.length > 0 && users.every((u) => u !== undefined && u === users[0]);
  if (oneUser) return { mode: 0o600, owner: users[0]! };
  if (s?.securityContext?.fsGroup !== undefined) return { mode: 0o600 };
  return { mode: defaultMode };
}

function filesOfVolume(pod: V1Pod, v: V1Volume, objects: PodObjects): MountSource | undefined {
  const ns = pod.metadata?.namespace ?? 'default';
  const files: FileItem[] = [];
  const tokens: TokenItem[] = [];
  const watch = { configMaps: [] as string[], secrets: [] as string[] };
  type Items = Array<{ key: string; path: string; mode?: number }> | undefined;
  const fromData = (data: Map<string, Buffer>, items: Items, mode: number, what: string) => {
    if (!items) {
      for (const [k, content] of data) files.push({ path: k, content, mode });
      return;
    }
    for (const it of items) {
      const content = data.get(it.key);
      if (!content) throw new ContainerConfigError(`couldn't find key ${it.key} in ${what}`);
      files.push({ path: it.path, content, mode: it.mode ?? mode });
    }
  };
  const decoded = (o: Record<string, string> | undefined, encoding: BufferEncoding) =>
    Object.entries(o ?? {}).map(([k, v]): [string, Buffer] => [k, Buffer.from(v, encoding)]);
  const configMap = (name: string, items: Items, mode: number, optional: boolean | undefined) => {
    watch.configMaps.push(name);
    const cm = objects.configMap(name);
    if (!cm) {
      if (optional) return;
      throw new ContainerConfigError(`configmap "${name}" not found`);
    }
    const data = new Map([...decoded(cm.data, 'utf8'), ...decoded(cm.binaryData, 'base64')]);
    fromData(data, items, mode, `ConfigMap ${ns}/${name}`);
  };
  const secret = (name: string, items: Items, mode: number, optional: boolean | undefined) => {
    watch.secrets.push(name);
    const s = objects.secret(name);
    if (!s) {
      if (optional) return;
      throw new ContainerConfigError(`secret "${name}" not found`);
    }
    fromData(new Map(decoded(s.data, 'base64')), items, mode, `Secret ${ns}/${name}`);
  };
  const downward = (items: V1DownwardAPIVolumeFile[] | undefined, mode: number) => {
    for (const it of items ?? []) {
      const value = it.fieldRef
        ? downwardField(pod, it.fieldRef.fieldPath)
        : it.resourceFieldRef
          ? resourceValue(pod, undefined, it.resourceFieldRef)
          : '';
      files.push({ path: it.path, content: Buffer.from(value), mode: it.mode ?? mode });
    }
  };
  if (v.configMap)
    configMap(
      v.configMap.name ?? '',
      v.configMap.items,
      v.configMap.defaultMode ?? DEFAULT_MODE,
      v.configMap.optional,
    );
  else if (v.secret)
    secret(
      v.secret.secretName ?? '',
      v.secret.items,
      v.secret.defaultMode ?? DEFAULT_MODE,
      v.secret.optional,
    );
  else if (v.downwardAPI) downward(v.downwardAPI.items, v.downwardAPI.defaultMode ?? DEFAULT_MODE);
  else if (v.projected) {
    const mode = v.projected.defaultMode ?? DEFAULT_MODE;
    for (const s of v.projected.sources ?? []) {
      if (s.configMap) configMap(s.configMap.name ?? '', s.configMap.items, mode, s.configMap.optional);
      if (s.secret) secret(s.secret.name ?? '', s.secret.items, mode, s.secret.optional);
      // The service-account admission's kube-api-access volume has one: the pod's namespace.
      if (s.downwardAPI) downward(s.downwardAPI.items, mode);
      if (s.serviceAccountToken)
        tokens.push({
          path: s.serviceAccountToken.path,
          audience: s.serviceAccountToken.audience,
          // The API server's default and minimum for a projected token.
          expirationSeconds: Math.max(s.serviceAccountToken.expirationSeconds ?? 3600, 600),
          ...tokenMode(pod, mode),
        });
    }
  } else return undefined;
  return { kind: 'files', files, tokens, watch };
}

/**
 * Where volume `v` of `pod` takes its content from, read now from `objects`:
 * the node agent calls it again when a watched object changes.
 */
export function volumeSource(pod: V1Pod, v: V1Volume, objects: PodObjects): MountSource {
  const files = filesOfVolume(pod, v, objects);
  if (files) return files;
  if (v.emptyDir) return { kind: 'emptyDir', volume: v.name };
  if (v.persistentVolumeClaim)
    return {
      kind: 'persistentVolumeClaim',
      claimName: v.persistentVolumeClaim.claimName,
      readOnly: v.persistentVolumeClaim.readOnly === true,
    };
  if (v.hostPath) return { kind: 'hostPath', path: v.hostPath.path, type: v.hostPath.type };
  if (v.csi) return { kind: 'csi', driver: v.csi.driver, attributes: v.csi.volumeAttributes ?? {} };
  throw new ContainerConfigError(`volume "${v.name}": a kind the lab node agent does not provide`);
}

/** Resolves a probe's port, by number or by the name of one of the container's ports. */
function probePort(c: V1Container, port: number | string): number {
  if (typeof port === 'number') return port;
  if (/^\d+$/.test(port)) return Number(port);
  const p = c.ports?.find((x) => x.name === port);
  if (!p) throw new ContainerConfigError(`probe port "${port}" is not a port of container ${c.name}`);
  return p.containerPort;
}

/** A probe with Kubernetes' defaults filled in (period 10 s, timeout 1 s, thresholds 1 and 3). */
export function probePlan(c: V1Container, p: V1Probe | undefined): ProbePlan | undefined {
  if (!p) return undefined;
  let action: ProbeAction;
  if (p.httpGet)
    action = {
      kind: 'http',
      scheme: p.httpGet.scheme === 'HTTPS' ? 'HTTPS' : 'HTTP',
      host: p.httpGet.host,
      port: probePort(c, p.httpGet.port as number | string),
      path: p.httpGet.path ?? '/',
      headers: (p.httpGet.httpHeaders ?? []).map((h) => [h.name, h.value]),
    };
  else if (p.tcpSocket)
    action = { kind: 'tcp', host: p.tcpSocket.host, port: probePort(c, p.tcpSocket.port as number | string) };
  else if (p.exec) action = { kind: 'exec', command: p.exec.command ?? [] };
  else if (p.grpc) action = { kind: 'grpc', port: p.grpc.port, service: p.grpc.service };
  else throw new ContainerConfigError(`a probe of container ${c.name} has no action`);
  return {
    action,
    initialDelaySeconds: p.initialDelaySeconds ?? 0,
    periodSeconds: p.periodSeconds ?? 10,
    timeoutSeconds: p.timeoutSeconds ?? 1,
    successThreshold: p.successThreshold ?? 1,
    failureThreshold: p.failureThreshold ?? 3,
  };
}

/** The plan of one container of `pod`, run from `image`. Throws ContainerConfigError where the kubelet would refuse. */
export function containerPlan(
  pod: V1Pod,
  c: V1Container,
  image: KnownImage,
  objects: PodObjects,
): ContainerPlan {
  const env = containerEnv(pod, c, objects);
  const volumes = new Map((pod.spec?.volumes ?? []).map((v) => [v.name, v]));
  const mounts = (c.volumeMounts ?? []).map((m): MountPlan => {
    const v = volumes.get(m.name);
    if (!v) throw new ContainerConfigError(`volume mount "${m.name}" names no volume of the pod`);
    return {
      path: m.mountPath,
      readOnly: m.readOnly === true,
      subPath: m.subPath || (m.subPathExpr ? expand(m.subPathExpr, new Map(env)) : undefined),
      volume: m.name,
      source: volumeSource(pod, v, objects),
    };
  });
  return {
    name: c.name,
    argv: containerArgv(c, image, env),
    workdir: c.workingDir || image.workdir,
    env,
    mounts,
    readiness: probePlan(c, c.readinessProbe),
    liveness: probePlan(c, c.livenessProbe),
    startup: probePlan(c, c.startupProbe),
    user: containerUser(pod, c),
  };
}
