/**
 * What each engine phase wants in one cluster, as steps: a step's objects are
 * applied, then waited for, before the next step starts. Shared by `up`,
 * `plan` and `status`, so the three agree on what a phase is.
 *
 * - namespaces: the registrar's CRDs (upstream) and the namespaces;
 * - cert-manager: its release manifest, then the root CA, issuers and cacerts;
 * - spire, federation, apps: what the renderer makes;
 * - istio: istioctl's manifests for the rendered IstioOperator, then the
 *   objects applied after Istio (STRICT mTLS, cross-network Gateway);
 * - remote-secrets: built at apply time from the peers' tokens (up.ts).
 */
import type { Fleet } from '../fleet/model.js';
import { issuanceOrder } from '../render/cert-manager.js';
import { type ClusterRender, renderCluster } from '../render/index.js';
import type { KubeObject, PendingInput, PhaseName, RenderInputs } from '../render/types.js';
import type { EnginePhase } from './apply.js';
import { generateIstio, type Istioctl } from './istioctl.js';
import type { UpstreamSource } from './upstream.js';

export interface Step {
  /** What the step is, for progress lines: "cert-manager 1.21.2 release". */
  label: string;
  objects: KubeObject[];
}

export interface PhaseWant {
  phase: EnginePhase;
  steps: Step[];
  pending: PendingInput[];
  warnings: string[];
}

export interface DesiredSources {
  upstream: UpstreamSource;
  /** Needed for the istio phase; its absence is an error there. */
  istioctl?: Istioctl;
  cacheDir?: string;
}

/**
 * Renders of a fleet, by cluster and inputs: a run asks for each phase of
 * each cluster (spire twice), and the render of a cluster is the same for
 * the same fleet and inputs, so a run renders each cluster once per set of
 * addresses it knows. Kept as long as the fleet object lives; its objects
 * are never changed by the engine (what it sends is built as copies).
 */
const renders = new WeakMap<Fleet, Map<string, ClusterRender>>();

export function renderOnce(fleet: Fleet, cluster: string, inputs: RenderInputs): ClusterRender {
  let byKey = renders.get(fleet);
  if (!byKey) {
    byKey = new Map();
    renders.set(fleet, byKey);
  }
  const endpoints = Object.entries(inputs.bundleEndpoints ?? {}).sort(([a], [b]) => a.localeCompare(b));
  const key = JSON.stringify([cluster, { ...inputs, bundleEndpoints: endpoints }]);
  let r = byKey.get(key);
  if (!r) {
    r = renderCluster(fleet, cluster, inputs);
    byKey.set(key, r);
  }
  return r;
}

export async function desiredPhase(
  fleet: Fleet,
  cluster: string,
  phase: Exclude<EnginePhase, 'remote-secrets'>,
  inputs: RenderInputs,
  src: DesiredSources,
): Promise<PhaseWant> {
  const render = renderOnce(fleet, cluster, inputs).phases.find((p) => p.phase === (phase as PhaseName))!;
  const upstream = (
    await Promise.all(render.upstream.map((u) => src.upstream.objects(u, src.cacheDir)))
  ).flat();
  const want: PhaseWant = { phase, steps: [], pending: render.pending, warnings: [] };
  switch (phase) {
    case 'namespaces':
      want.steps.push({
        label: 'namespaces and registration CRDs',
        objects: [...upstream, ...render.objects],
      });
      break;
    case 'cert-manager':
      want.steps.push(
        {
          label: `cert-manager ${fleet.versions.certManager} release`,
          objects: upstream.map(withoutEmptyCaBundles),
        },
        ...issuanceOrder(render.objects).map((objects, i) => ({
          label: i === 0 ? 'root CA and its issuer' : 'CA issuer and the certificates it issues',
          objects,
        })),
      );
      break;
    case 'istio': {
      const iop = istioOperator(render);
      if (!src.istioctl)
        throw new Error('the istio phase needs istioctl: give --istioctl PATH or put it on PATH');
      if (iop) {
        const g = await generateIstio(src.istioctl, iop, src.cacheDir ? { cacheDir: src.cacheDir } : {});
        want.warnings.push(...g.warnings);
        want.steps.push({
          label: `Istio ${fleet.versions.istio} (istioctl ${src.istioctl.version})`,
          objects: g.objects,
        });
      }
      want.steps.push({ label: 'mTLS policy and cross-network gateway', objects: render.objects });
      break;
    }
    default:
      want.steps.push({ label: phase, objects: render.objects });
  }
  return want;
}

const istioOperator = (render: { generatorInputs: KubeObject[] }) =>
  render.generatorInputs.find((o) => o.kind === 'IstioOperator');

/**
 * Starts istioctl's generation for `cluster` now, so that it runs while the
 * run waits on the phases before Istio (pods starting, certificates issuing)
 * instead of at the start of the istio phase, where each cluster's took about
 * a second of CPU (istioctl, then reading its 1 MB of YAML). The IstioOperator
 * does not depend on what a run discovers (`inputs`: what the run knows now,
 * so that the render is the one its first phases use). Its failure is left to the istio
 * phase, which asks again and says why.
 */
export function prefetchIstio(
  fleet: Fleet,
  cluster: string,
  inputs: RenderInputs,
  src: DesiredSources,
): void {
  if (!src.istioctl) return;
  try {
    const render = renderOnce(fleet, cluster, inputs).phases.find((p) => p.phase === 'istio');
    const iop = render && istioOperator(render);
    if (iop) generateIstio(src.istioctl, iop, src.cacheDir ? { cacheDir: src.cacheDir } : {}).catch(() => {});
  } catch {
    // The run renders this cluster again, and reports what fails.
  }
}

/**
 * Webhook configurations as installs ship them carry `caBundle: ""`, which
 * the install's own controller fills in (istiod, cert-manager's cainjector).
 * Applying the empty value would make meshfed own the field and undo the
 * controller at every run; without it, the controller owns it alone.
 */
export function withoutEmptyCaBundles(o: KubeObject): KubeObject {
  if (o.kind !== 'MutatingWebhookConfiguration' && o.kind !== 'ValidatingWebhookConfiguration') return o;
  const webhooks = (o.webhooks as Array<{ clientConfig?: { caBundle?: string } }> | undefined)?.map((w) => {
    if (w.clientConfig?.caBundle !== '') return w;
    const { caBundle: _empty, ...clientConfig } = w.clientConfig;
    return { ...w, clientConfig };
  });
  return webhooks ? { ...o, webhooks } : o;
}

/** group/kind/namespace/name, the identity of an object across API versions. */
export function identity(o: {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
}): string {
  const group = o.apiVersion.includes('/') ? o.apiVersion.split('/')[0] : '';
  return `${group}/${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
}
