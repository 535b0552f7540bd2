/**
 * The images the lab node agent can run for real, mapped to the lab's builds:
 * an image's ENTRYPOINT, CMD and WORKDIR as its Dockerfile sets them (read
 * from the upstream Dockerfiles of the pinned releases), and the programs it
 * carries, at their paths inside the image, built by `npm run lab:build`.
 * Any other image stays simulated by kwok.
 *
 * The SPIRE 1.5.1 images start their program under dumb-init (PID 1 signal
 * forwarding); the lab is that init, so the program is run directly.
 */
import { LAB_CERT_MANAGER_BUILDS, LAB_ENVOY_BUILDS, LAB_ISTIO_BUILDS } from '../binaries.js';

export interface KnownImage {
  /** Repository without the tag ("ghcr.io/spiffe/spire-server"). */
  repository: string;
  /** ENTRYPOINT and CMD of the image (CMD is replaced by a container's `args`). */
  entrypoint: string[];
  cmd: string[];
  workdir: string;
  /**
   * The lab build that stands for the image's programs: component, and the
   * program at each path in the image; `versions` maps an image tag to the
   * lab build that stands for it when they differ (default: the tag without v).
   */
  build?: {
    component: string;
    programs: Record<string, string>;
    versions?: Readonly<Record<string, string>>;
    /**
     * Files of other lab builds the image also carries (Istio's proxy image
     * carries Envoy): component, its build version per image tag, and the
     * file of that build at each path in the image.
     */
    also?: Array<{
      component: string;
      versions: Readonly<Record<string, string>>;
      files: Record<string, string>;
    }>;
  };
  /** The image's ENV: a container's own env overrides it, as with any image. */
  env?: Array<[string, string]>;
  /**
   * An image the lab does not build but whose pods it must run (a container of
   * a pod it runs): an idle process of this machine's stands in, whatever the
   * spec's command, and why says what does its job instead.
   */
  standIn?: { argv: string[]; why: string };
  /**
   * An image the lab runs with this machine's programs, no build of its own:
   * the system folders every container sees already hold what it runs (curl's
   * image: /usr/bin/curl, /bin/sleep), so its containers run their spec's
   * command (or the image's ENTRYPOINT and CMD) like any image's. `files` are
   * small files of the image the lab writes itself (an entrypoint script),
   * executable, at their paths in the image; why says what stands for what.
   */
  machine?: { why: string; files?: Record<string, string> };
}

/**
 * istiod's settings for proxies that are upstream Envoy: the metadata
 * exchange and ALPN filters exist only in Istio's own Envoy build, and
 * upstream Envoy rejects a listener or cluster that names them (istio/istio
 * pilot/pkg/features). A lab setting, not part of what meshfed renders.
 */
const UPSTREAM_ENVOY_ENV: Array<[string, string]> = [
  ['PILOT_ENABLE_METADATA_EXCHANGE', 'false'],
  ['PILOT_ENABLE_ALPN_FILTER', 'false'],
];

const spire = (repository: string, program: 'spire-server' | 'spire-agent' | 'k8s-workload-registrar') => ({
  repository,
  entrypoint: [`/opt/spire/bin/${program}`, ...(program === 'k8s-workload-registrar' ? [] : ['run'])],
  cmd: [],
  workdir: '/opt/spire',
  build: { component: 'spire', programs: { [`/opt/spire/bin/${program}`]: program } },
});

/** Where the lab's helloworld image has its Python packages (its ENV PYTHONPATH). */
const HELLOWORLD_SITE_PACKAGES = '/usr/local/lib/python3/site-packages';

/**
 * What curl's image runs first (the lab's own script, doing what
 * curl-container's etc/entrypoint.sh does): arguments that start with "-", or
 * whose first is no command, are curl's; anything else runs as it is.
 */
const CURL_ENTRYPOINT = `#!/bin/sh
set -e
case "$1" in -*) set -- curl "$@" ;; *) command -v "$1" >/dev/null 2>&1 || set -- curl "$@" ;; esac
exec "$@"
`;

/** Every known image; the tag is the version of the lab build (`component/<tag without v>`). */
export const KNOWN_IMAGES: KnownImage[] = [
  spire('ghcr.io/spiffe/spire-server', 'spire-server'),
  spire('ghcr.io/spiffe/spire-agent', 'spire-agent'),
  spire('gcr.io/spiffe-io/spire-server', 'spire-server'),
  spire('gcr.io/spiffe-io/spire-agent', 'spire-agent'),
  spire('gcr.io/spiffe-io/k8s-workload-registrar', 'k8s-workload-registrar'),
  {
    repository: 'ghcr.io/spiffe/spire-controller-manager',
    entrypoint: ['/spire-controller-manager'],
    cmd: [],
    workdir: '/',
    build: {
      component: 'spire-controller-manager',
      programs: { '/spire-controller-manager': 'spire-controller-manager' },
    },
  },
  // istiod (istio/istio pilot/docker/Dockerfile.pilot: ENTRYPOINT pilot-discovery).
  // The lab's proxies are upstream Envoy, not Istio's own build: the image's
  // ENV turns off the filters only Istio's build has (docs/lab.md).
  {
    repository: 'docker.io/istio/pilot',
    entrypoint: ['/usr/local/bin/pilot-discovery'],
    cmd: [],
    workdir: '/',
    build: {
      component: 'istio',
      programs: {
        '/usr/local/bin/pilot-discovery': 'pilot-discovery',
        '/var/lib/istio/envoy/envoy_bootstrap_tmpl.json': 'packaging/envoy_bootstrap.json',
      },
      versions: LAB_ISTIO_BUILDS,
    },
    env: UPSTREAM_ENVOY_ENV,
  },
  // Istio's proxy (pilot/docker/Dockerfile.proxyv2: ENTRYPOINT pilot-agent,
  // Envoy beside it, the bootstrap template): sidecars and gateways.
  {
    repository: 'docker.io/istio/proxyv2',
    entrypoint: ['/usr/local/bin/pilot-agent'],
    cmd: [],
    workdir: '/',
    build: {
      component: 'istio',
      programs: {
        '/usr/local/bin/pilot-agent': 'pilot-agent',
        '/var/lib/istio/envoy/envoy_bootstrap_tmpl.json': 'packaging/envoy_bootstrap.json',
      },
      versions: LAB_ISTIO_BUILDS,
      also: [{ component: 'envoy', versions: LAB_ENVOY_BUILDS, files: { '/usr/local/bin/envoy': 'envoy' } }],
    },
  },
  // cert-manager's controller, webhook and cainjector (hack/containers/
  // Containerfile.<name> of v1.11.5, v1.15.1 and v1.21.2 alike: the program at
  // /app/cmd/<name>/<name>, ENTRYPOINT it, no CMD or WORKDIR). The lab's build
  // is 1.11.5 whatever the tag (LAB_CERT_MANAGER_BUILDS; docs/lab.md).
  ...(['controller', 'webhook', 'cainjector'] as const).map(
    (name): KnownImage => ({
      repository: `quay.io/jetstack/cert-manager-${name}`,
      entrypoint: [`/app/cmd/${name}/${name}`],
      cmd: [],
      workdir: '/',
      build: {
        component: 'cert-manager',
        programs: { [`/app/cmd/${name}/${name}`]: name === 'controller' ? 'cert-manager-controller' : name },
        versions: LAB_CERT_MANAGER_BUILDS,
      },
    }),
  ),
  // The demo app helloworld (istio/istio samples/helloworld/src/Dockerfile:
  // WORKDIR /opt/microservices, pip install of requirements.txt, ENV
  // SERVICE_VERSION from the build arg service_version, which Istio's build
  // sets to v1 and v2 for the two images; CMD gunicorn on [::]:5000 with
  // gevent). The lab's build: app.py, its requirements installed for this
  // machine's /usr/bin/python3 (the image's python is 3.12; PYTHONPATH is the
  // lab's), and /usr/local/bin/gunicorn, a launcher of `python3 -m gunicorn`.
  ...(['v1', 'v2'] as const).map(
    (v): KnownImage => ({
      repository: `docker.io/istio/examples-helloworld-${v}`,
      entrypoint: [],
      cmd: ['gunicorn', '-b', '[::]:5000', 'app:app', '-k', 'gevent'],
      workdir: '/opt/microservices',
      build: {
        component: 'helloworld',
        programs: {
          '/opt/microservices/app.py': 'app/app.py',
          '/opt/microservices/requirements.txt': 'app/requirements.txt',
          [HELLOWORLD_SITE_PACKAGES]: 'site-packages',
          '/usr/local/bin/gunicorn': 'gunicorn',
        },
      },
      env: [
        ['SERVICE_VERSION', v],
        ['PYTHONPATH', HELLOWORLD_SITE_PACKAGES],
      ],
    }),
  ),
  // The demo apps' client, curl's image (curl/curl-container: ENTRYPOINT
  // /entrypoint.sh, CMD curl, WORKDIR /home/curl_user; USER curl_user and ENV
  // CURL_CA_BUNDLE=/cacert.pem are not the lab's: containers run as root and
  // curl uses this machine's CA certificates). curl is this machine's
  // /usr/bin/curl.
  {
    repository: 'docker.io/curlimages/curl',
    entrypoint: ['/entrypoint.sh'],
    cmd: ['curl'],
    workdir: '/home/curl_user',
    machine: {
      why: "this machine's /usr/bin/curl, which every container sees",
      files: { '/entrypoint.sh': CURL_ENTRYPOINT },
    },
  },
  // The SPIFFE CSI driver's node plugin and the kubelet's registrar beside it
  // in the SPIRE agent's DaemonSet: the lab node agent is the kubelet, and
  // mounts a csi.spiffe.io volume as the node's agent socket folder itself.
  ...['ghcr.io/spiffe/spiffe-csi-driver', 'registry.k8s.io/sig-storage/csi-node-driver-registrar'].map(
    (repository): KnownImage => ({
      repository,
      entrypoint: [],
      cmd: [],
      workdir: '/',
      standIn: {
        argv: ['/usr/bin/sleep', 'infinity'],
        why: 'the lab node agent mounts csi.spiffe.io volumes (the node agent socket folder) itself',
      },
    }),
  ),
  // Bookinfo's services (Java, Node, Ruby, Python): their sidecars are real
  // once injected, the services themselves stand in idle (docs/lab.md).
  ...['details-v1', 'ratings-v1', 'reviews-v1', 'reviews-v2', 'reviews-v3', 'productpage-v1'].map(
    (app): KnownImage => ({
      repository: `docker.io/istio/examples-bookinfo-${app}`,
      entrypoint: [],
      cmd: [],
      workdir: '/',
      standIn: {
        argv: ['/usr/bin/sleep', 'infinity'],
        why: "the lab does not build Bookinfo's services; in the lab Bookinfo is for its sidecars' identities",
      },
    }),
  ),
];

export interface ImageRef {
  repository: string;
  tag: string | undefined;
  digest: string | undefined;
}

/** Splits an image reference into repository, tag and digest (a registry port is not a tag). */
export function parseImage(image: string): ImageRef {
  const [nameTag, digest] = image.split('@', 2) as [string, string | undefined];
  const slash = nameTag.lastIndexOf('/');
  const colon = nameTag.lastIndexOf(':');
  const hasTag = colon > slash;
  return {
    repository: hasTag ? nameTag.slice(0, colon) : nameTag,
    tag: hasTag ? nameTag.slice(colon + 1) : undefined,
    digest,
  };
}

/** The known image and the lab build version for an image reference, or undefined (kwok simulates it). */
export function knownImage(
  image: string,
  table: KnownImage[] = KNOWN_IMAGES,
): { image: KnownImage; version: string; also: ExtraBuild[] } | undefined {
  const ref = parseImage(image);
  const known = table.find((k) => k.repository === ref.repository);
  if (!known || !ref.tag) return undefined;
  const tag = ref.tag.replace(/^v/, '');
  const also = (known.build?.also ?? []).map((a) => ({
    component: a.component,
    version: a.versions[tag],
    files: a.files,
  }));
  return { image: known, version: known.build?.versions?.[tag] ?? tag, also };
}

/** Another lab build an image's files come from; version undefined: none pairs with the image's tag. */
export interface ExtraBuild {
  component: string;
  version: string | undefined;
  files: Record<string, string>;
}

/**
 * Repositories of the images the lab runs for real, from a build of its own or
 * with this machine's programs: a pod with one of them is the lab node agent's
 * to run (stand-ins run only beside them), and kwok's stages leave it alone
 * (stages.ts).
 */
export const REAL_REPOSITORIES: string[] = KNOWN_IMAGES.filter((k) => k.build || k.machine).map(
  (k) => k.repository,
);

/** The lab builds of the identity plane: SPIRE, its registrar, cert-manager. */
const IDENTITY_COMPONENTS = new Set(['spire', 'spire-controller-manager', 'cert-manager']);

/**
 * Repositories of the identity plane's images (SPIRE's server, agent and
 * registrars, spire-controller-manager, cert-manager's three programs): a lab
 * whose data plane kwok simulates (`--pods simulated`) still runs these for
 * real, from their stored specs, so that what meshfed renders for them is
 * what runs in every lab.
 */
export const IDENTITY_REPOSITORIES: string[] = KNOWN_IMAGES.filter(
  (k) => k.build && IDENTITY_COMPONENTS.has(k.build.component),
).map((k) => k.repository);
