/**
 * Remote secrets at apply time: in each cluster, make sure the reader
 * service account has its token Secret, wait (bounded) until the API server
 * has filled it in, and build the remote secret its peers get. The token
 * never leaves the Secret objects: errors and progress name objects, not
 * their data.
 */
import type { ClusterClient, KubeObject } from '../kube/client.js';
import { ISTIO_NAMESPACE } from '../render/namespaces.js';
import {
  READER_SERVICE_ACCOUNT,
  READER_TOKEN_SECRET,
  readerTokenSecret,
  remoteSecret,
} from '../render/remote-secret.js';
import { type Applied, type ApplyRun, applyObjects, retrying, strongest } from './apply.js';

export interface RemoteSecretOptions {
  /** The API server URL peers use (default: the client's, from the kubeconfig). */
  server?: string;
  timeoutMs?: number;
  labels?: Record<string, string>;
  /** How the reader's token Secret is applied (default: a plain apply); the engine passes its own, which marks ownership. */
  applyTokenSecret?: (secret: KubeObject) => Promise<unknown>;
}

export async function remoteSecretOf(
  client: ClusterClient,
  cluster: string,
  o: RemoteSecretOptions = {},
): Promise<KubeObject> {
  const sa = await client.get({
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    namespace: ISTIO_NAMESPACE,
    name: READER_SERVICE_ACCOUNT,
  });
  if (!sa)
    throw new Error(
      `${client.context}: no ServiceAccount ${ISTIO_NAMESPACE}/${READER_SERVICE_ACCOUNT} (Istio's base install creates it): install Istio in ${cluster} first`,
    );
  await (o.applyTokenSecret ?? ((x: KubeObject) => client.apply(x)))(readerTokenSecret() as KubeObject);
  const deadline = Date.now() + (o.timeoutMs ?? 30_000);
  for (;;) {
    const s = await client.get({
      apiVersion: 'v1',
      kind: 'Secret',
      namespace: ISTIO_NAMESPACE,
      name: READER_TOKEN_SECRET,
    });
    const data = (s?.data ?? {}) as Record<string, string>;
    if (data.token && data['ca.crt'])
      return remoteSecret(
        {
          cluster,
          server: o.server ?? client.server,
          caData: data['ca.crt'],
          token: Buffer.from(data.token, 'base64').toString('utf8'),
        },
        o.labels,
      ) as KubeObject;
    if (Date.now() > deadline)
      throw new Error(
        `${client.context}: Secret ${ISTIO_NAMESPACE}/${READER_TOKEN_SECRET} has no token after ${o.timeoutMs ?? 30_000} ms (is kube-controller-manager's token controller running?)`,
      );
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * The engine's form of remoteSecretOf: the reader's token Secret applied
 * with meshfed's marks, the whole retried on what can heal. What was applied
 * is gathered across the tries and returned once per object (the first try
 * may have created the Secret before it failed; the next finds it), so a
 * retry never counts an object twice.
 */
export async function readerRemoteSecret(
  client: ClusterClient,
  cluster: string,
  run: ApplyRun & { timeoutMs: number },
): Promise<{ secret: KubeObject; applied: Applied[] }> {
  const applied: Applied[] = [];
  const secret = await retrying(
    () =>
      remoteSecretOf(client, cluster, {
        timeoutMs: run.timeoutMs,
        applyTokenSecret: async (s) => {
          applied.push(...(await applyObjects(client, [s], run)));
        },
      }),
    { deadlineMs: run.timeoutMs },
  );
  return { secret, applied: strongest(applied) };
}
