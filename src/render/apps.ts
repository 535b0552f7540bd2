/**
 * Phase "apps": the guide's demo workloads, each on or off in the fleet.
 * helloworld: the same Service in every cluster, version v<i+1> deployed in
 * the i-th cluster (upstream publishes v1 and v2 images; the app reports
 * SERVICE_VERSION, so later clusters run the v1 image as v3, v4, …). sleep:
 * a curl client in every cluster. bookinfo: where the fleet says. The /hello
 * ingress route: in every cluster, so north-south can be checked against
 * each cluster's ingress gateway. Every pod asks for a SPIRE identity through
 * identity.ts; every image is pinned.
 */
import { clusterIndex } from '../fleet/model.js';
import { workloadIdentityMeta } from './identity.js';
import type { KubeObject, PhaseOutput, RenderContext } from './types.js';

export type AppName = 'helloworld' | 'sleep' | 'bookinfo';
export const APP_NAMESPACES: Record<AppName, string> = {
  helloworld: 'helloworld',
  sleep: 'sleep',
  bookinfo: 'bookinfo',
};

const HELLOWORLD_TAG = '1.0';
const CURL_IMAGE = 'docker.io/curlimages/curl:8.16.0';
const BOOKINFO_TAG = '1.20.3';

/** Apps deployed in this cluster, in a stable order. */
export function appsInCluster(ctx: RenderContext): AppName[] {
  const a = ctx.fleet.apps;
  const out: AppName[] = [];
  if (a.helloworld.enabled) out.push('helloworld');
  if (a.sleep.enabled) out.push('sleep');
  if (a.bookinfo.enabled && a.bookinfo.clusters.includes(ctx.cluster.name)) out.push('bookinfo');
  return out;
}

const svcAccount = (name: string, namespace: string): KubeObject => ({
  apiVersion: 'v1',
  kind: 'ServiceAccount',
  metadata: { name, namespace },
});

function service(
  name: string,
  namespace: string,
  port: number,
  selector: Record<string, string>,
): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace, labels: { app: selector.app!, service: name } },
    spec: { ports: [{ port, name: 'http' }], selector },
  };
}

function deployment(
  ctx: RenderContext,
  name: string,
  namespace: string,
  labels: Record<string, string>,
  serviceAccountName: string,
  container: Record<string, unknown>,
  extraSpec: Record<string, unknown> = {},
): KubeObject {
  const id = workloadIdentityMeta(ctx);
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace, labels },
    spec: {
      replicas: 1,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels: { ...labels, ...id.labels }, annotations: id.annotations },
        spec: {
          serviceAccountName,
          containers: [{ imagePullPolicy: 'IfNotPresent', ...container }],
          ...extraSpec,
        },
      },
    },
  };
}

function helloworld(ctx: RenderContext): KubeObject[] {
  const ns = APP_NAMESPACES.helloworld;
  const n = clusterIndex(ctx.fleet, ctx.cluster.name) + 1;
  const version = `v${n}`;
  return [
    svcAccount('helloworld', ns),
    service('helloworld', ns, 5000, { app: 'helloworld' }),
    deployment(ctx, `helloworld-${version}`, ns, { app: 'helloworld', version }, 'helloworld', {
      name: 'helloworld',
      image: `docker.io/istio/examples-helloworld-${n === 2 ? 'v2' : 'v1'}:${HELLOWORLD_TAG}`,
      env: [{ name: 'SERVICE_VERSION', value: version }],
      resources: { requests: { cpu: '100m' } },
      ports: [{ containerPort: 5000 }],
    }),
  ];
}

function sleep(ctx: RenderContext): KubeObject[] {
  const ns = APP_NAMESPACES.sleep;
  return [
    svcAccount('sleep', ns),
    service('sleep', ns, 80, { app: 'sleep' }),
    deployment(
      ctx,
      'sleep',
      ns,
      { app: 'sleep' },
      'sleep',
      {
        name: 'sleep',
        image: CURL_IMAGE,
        command: ['/bin/sleep', 'infinity'],
        resources: { requests: { cpu: '10m' } },
        volumeMounts: [{ mountPath: '/tmp', name: 'tmp' }],
      },
      { terminationGracePeriodSeconds: 0, volumes: [{ name: 'tmp', emptyDir: {} }] },
    ),
  ];
}

function bookinfo(ctx: RenderContext): KubeObject[] {
  const ns = APP_NAMESPACES.bookinfo;
  const out: KubeObject[] = [];
  const tmp = { volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }] };
  const tmpVol = { volumes: [{ name: 'tmp', emptyDir: {} }] };
  const apps: Array<[string, string[]]> = [
    ['details', ['v1']],
    ['ratings', ['v1']],
    ['reviews', ['v1', 'v2', 'v3']],
    ['productpage', ['v1']],
  ];
  for (const [app, versions] of apps) {
    out.push(service(app, ns, 9080, { app }), svcAccount(`bookinfo-${app}`, ns));
    for (const version of versions)
      out.push(
        deployment(
          ctx,
          `${app}-${version}`,
          ns,
          { app, version },
          `bookinfo-${app}`,
          {
            name: app,
            image: `docker.io/istio/examples-bookinfo-${app}-${version}:${BOOKINFO_TAG}`,
            ports: [{ containerPort: 9080 }],
            resources: { requests: { cpu: '10m' } },
            securityContext: { runAsUser: 1000 },
            ...(app === 'reviews' || app === 'productpage' ? tmp : {}),
          },
          app === 'reviews' || app === 'productpage' ? tmpVol : {},
        ),
      );
  }
  return out;
}

function ingressRoute(): KubeObject[] {
  const ns = APP_NAMESPACES.helloworld;
  return [
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'Gateway',
      metadata: { name: 'helloworld-gateway', namespace: ns },
      spec: {
        selector: { istio: 'ingressgateway' },
        servers: [{ port: { number: 80, name: 'http', protocol: 'HTTP' }, hosts: ['*'] }],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'helloworld', namespace: ns },
      spec: {
        hosts: ['*'],
        gateways: ['helloworld-gateway'],
        http: [
          {
            match: [{ uri: { exact: '/hello' } }],
            route: [{ destination: { host: 'helloworld', port: { number: 5000 } } }],
          },
        ],
      },
    },
  ];
}

export function renderApps(ctx: RenderContext): PhaseOutput {
  const apps = appsInCluster(ctx);
  const objects: KubeObject[] = [];
  if (apps.includes('helloworld')) objects.push(...helloworld(ctx));
  if (apps.includes('sleep')) objects.push(...sleep(ctx));
  if (apps.includes('bookinfo')) objects.push(...bookinfo(ctx));
  if (ctx.fleet.apps.ingressRoute.enabled && apps.includes('helloworld')) objects.push(...ingressRoute());
  return { objects };
}
