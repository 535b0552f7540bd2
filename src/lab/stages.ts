/**
 * The lifecycle kwok gives simulated nodes and pods: kwok's own Stage objects
 * (copied from the kwok module by `npm run lab:build`: node-initialize,
 * node-heartbeat-with-lease and the "general" pod lifecycle), with the pod
 * delays set from the lab's options, so that pods become Ready after a
 * realistic, configurable time instead of at once.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { parseGoDuration } from '../fleet/durations.js';

/** Delay of a stage: uniformly between min and max milliseconds (kwok's duration and jitter duration). */
export interface DelayRange {
  minMs: number;
  maxMs: number;
}

export interface PodTimings {
  /** Scheduled → containers created and Running (kwok's pod-create and init-container stages). */
  start: DelayRange;
  /** Running → Ready (kwok's pod-ready stage). */
  ready: DelayRange;
  /** Deleted → gone (kwok's pod-delete stage); absent: kwok's own, within the pod's grace period. */
  stop?: DelayRange;
}

export const DEFAULT_POD_TIMINGS: PodTimings = {
  start: { minMs: 200, maxMs: 800 },
  ready: { minMs: 1000, maxMs: 3000 },
};

/**
 * The image repositories of a pod's containers (tag and digest cut off), as
 * a gojq expression kwok evaluates: its stages match a pod only when none of
 * them is one the lab node agent runs, so kwok never moves those pods.
 */
export const POD_REPOSITORIES_QUERY =
  '((.spec.initContainers // [])[], .spec.containers[]) | .image | sub("@.*$"; "") | sub(":[^:/]*$"; "")';

function leaveRealPods(stage: StageDoc, repositories: string[]): void {
  const spec = stage.spec!;
  const expressions = spec.selector?.matchExpressions ?? [];
  expressions.push({ key: POD_REPOSITORIES_QUERY, operator: 'NotIn', values: repositories });
  spec.selector = { ...spec.selector, matchExpressions: expressions };
}

/** Parses "2s" (exactly) or "1s..3s" (a range), as Go durations. */
export function parseDelayRange(text: string): DelayRange | undefined {
  const [a, b, extra] = text.split('..');
  if (extra !== undefined || !a) return undefined;
  const minMs = parseGoDuration(a.trim());
  const maxMs = b === undefined ? minMs : parseGoDuration(b.trim());
  if (minMs === undefined || maxMs === undefined || maxMs < minMs) return undefined;
  return { minMs, maxMs };
}

const POD_STAGE_TIMING: Record<string, keyof PodTimings | undefined> = {
  'pod-create': 'start',
  'pod-init-container-running': 'start',
  'pod-init-container-completed': 'start',
  'pod-ready': 'ready',
  'pod-delete': 'stop',
};

/**
 * The node annotation naming the port of the node's kubelet API when the lab
 * node agent serves it (real pods): kwok's node stages then write it as the
 * node's kubelet endpoint, so the API server's exec, logs and proxy requests
 * for the node reach the agent (which passes what it does not serve on to
 * kwok's own server).
 */
export const KUBELET_PORT_ANNOTATION = 'lab.meshfed.dev/kubelet-port';

const NODE_PORT_TEMPLATE = '{{ with NodePort }}';

/** kwok's node status template, with the kubelet endpoint's port taken from KUBELET_PORT_ANNOTATION when set. */
function kubeletPortFromAnnotation(stage: StageDoc): void {
  const next = stage.spec?.next;
  if (!next?.statusTemplate?.includes(NODE_PORT_TEMPLATE))
    throw new Error(
      `kwok stage ${stage.metadata?.name} has no "${NODE_PORT_TEMPLATE}" in its status template: the lab cannot point its nodes at their kubelets`,
    );
  next.statusTemplate = next.statusTemplate.replace(
    NODE_PORT_TEMPLATE,
    `{{ $kubeletPort := NodePort }}{{ with .metadata.annotations }}{{ with index . "${KUBELET_PORT_ANNOTATION}" }}{{ $kubeletPort = . }}{{ end }}{{ end }}{{ with $kubeletPort }}`,
  );
}

interface StageDoc {
  kind?: string;
  metadata?: { name?: string };
  spec?: {
    resourceRef?: { kind?: string };
    next?: { statusTemplate?: string };
    selector?: { matchExpressions?: Array<{ key: string; operator: string; values?: string[] }> };
    delay?: {
      durationMilliseconds?: number;
      jitterDurationMilliseconds?: number;
      jitterDurationFrom?: unknown;
    };
  };
}

/**
 * kwokctl's `--config` text: every stage from `stagesDir`, pod delays set from
 * `timings`. Per-pod annotations (`pod-ready.stage.kwok.x-k8s.io/delay` …)
 * still override, as kwok's stages read them. With `realRepositories` (real
 * pods), pods of those images are left to the node agent, and nodes take
 * their kubelet port from KUBELET_PORT_ANNOTATION.
 */
export function kwokStagesConfig(
  stagesDir: string,
  timings: PodTimings = DEFAULT_POD_TIMINGS,
  realRepositories: string[] = [],
): string {
  const files = readdirSync(stagesDir)
    .filter((f) => f.endsWith('.yaml'))
    .sort();
  const out: string[] = [];
  const names: string[] = [];
  for (const f of files) {
    for (const doc of parseAllDocuments(readFileSync(join(stagesDir, f), 'utf8'))) {
      if (doc.errors.length) throw new Error(`${join(stagesDir, f)}: ${doc.errors[0]!.message}`);
      const stage = doc.toJS() as StageDoc;
      if (stage?.kind !== 'Stage') continue;
      const name = stage.metadata?.name ?? '';
      const which = POD_STAGE_TIMING[name];
      const timing = which ? timings[which] : undefined;
      if (timing && stage.spec?.delay) {
        stage.spec.delay.durationMilliseconds = timing.minMs;
        stage.spec.delay.jitterDurationMilliseconds = timing.maxMs;
        delete stage.spec.delay.jitterDurationFrom;
      }
      if (realRepositories.length && stage.spec?.resourceRef?.kind === 'Pod')
        leaveRealPods(stage, realRepositories);
      if (
        realRepositories.length &&
        stage.spec?.resourceRef?.kind === 'Node' &&
        stage.spec.next?.statusTemplate?.includes('daemonEndpoints')
      )
        kubeletPortFromAnnotation(stage);
      names.push(name);
      out.push(stringify(stage, { lineWidth: 0 }));
    }
  }
  for (const required of ['node-initialize', 'pod-create', 'pod-ready', 'pod-delete'])
    if (!names.includes(required))
      throw new Error(`${stagesDir} has no kwok stage "${required}": run \`npm run lab:build\` again`);
  return out.join('---\n');
}
