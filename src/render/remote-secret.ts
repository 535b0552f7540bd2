/**
 * Istio's remote secrets, built natively (no istioctl at run time): for each
 * cluster, a Secret its peers hold, whose kubeconfig lets their istiod watch
 * this cluster's API server as the istio-reader service account. The same
 * name, labels, annotation and kubeconfig layout `istioctl
 * create-remote-secret` makes (checked against the real istioctl in the lab
 * tests), plus meshfed's ownership labels. The token is secret material: it
 * lives only in the object sent to the API server, never in output or logs.
 */
import { ISTIO_NAMESPACE } from './namespaces.js';
import type { KubeObject } from './types.js';

export const READER_SERVICE_ACCOUNT = 'istio-reader-service-account';
/** The token Secret istioctl creates for the reader (meshfed uses the same one). */
export const READER_TOKEN_SECRET = `${READER_SERVICE_ACCOUNT}-istio-remote-secret-token`;
export const MULTICLUSTER_LABEL = 'istio/multiCluster';
export const CLUSTER_ANNOTATION = 'networking.istio.io/cluster';

/** The Secret that makes the API server mint a long-lived token for the reader service account. */
export function readerTokenSecret(): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: READER_TOKEN_SECRET,
      namespace: ISTIO_NAMESPACE,
      annotations: { 'kubernetes.io/service-account.name': READER_SERVICE_ACCOUNT },
    },
    type: 'kubernetes.io/service-account-token',
  };
}

export interface RemoteAccess {
  /** The cluster the secret gives access to (its Istio cluster name). */
  cluster: string;
  /** Its API server URL as peers' istiods reach it. */
  server: string;
  /** Base64 PEM of the CA that signs the API server's certificate. */
  caData: string;
  token: string;
}

export function remoteSecretName(cluster: string): string {
  return `istio-remote-secret-${cluster}`;
}

/** The kubeconfig inside the secret: one cluster, one token user, one context, all named after the cluster. */
export function remoteKubeconfig(a: RemoteAccess): string {
  const q = JSON.stringify;
  return `apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: ${a.caData}
    server: ${a.server}
  name: ${q(a.cluster)}
contexts:
- context:
    cluster: ${q(a.cluster)}
    user: ${q(a.cluster)}
  name: ${q(a.cluster)}
current-context: ${q(a.cluster)}
kind: Config
users:
- name: ${q(a.cluster)}
  user:
    token: ${a.token}
`;
}

/** The remote secret of cluster `a.cluster`, to be applied in each peer's istio-system. */
export function remoteSecret(a: RemoteAccess, labels: Record<string, string> = {}): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: remoteSecretName(a.cluster),
      namespace: ISTIO_NAMESPACE,
      labels: { ...labels, [MULTICLUSTER_LABEL]: 'true' },
      annotations: { [CLUSTER_ANNOTATION]: a.cluster },
    },
    stringData: { [a.cluster]: remoteKubeconfig(a) },
  };
}
