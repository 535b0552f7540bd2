/**
 * Where peers reach a Service: a LoadBalancer's ingress `ip` or `hostname`
 * (waited for, with a bound), or for a NodePort a node's ExternalIP (else its
 * InternalIP) with the node port. Returns "host:port".
 */
import type { ClusterClient, KubeObject } from '../kube/client.js';
import { ISTIO_NAMESPACE, SPIRE_NAMESPACE } from '../render/namespaces.js';
import { retrying } from './apply.js';

/** The Services whose addresses peers use: the SPIRE bundle endpoint and the east-west gateway. */
export const BUNDLE_ENDPOINT_SERVICE = { namespace: SPIRE_NAMESPACE, name: 'spire-server-bundle-endpoint' };
export const EAST_WEST_SERVICE = {
  namespace: ISTIO_NAMESPACE,
  name: 'istio-eastwestgateway',
  portName: 'tls',
};

/** The SPIRE server's pod, which `spire-server` CLI calls go to through pod exec. */
export const SPIRE_SERVER_POD = { namespace: SPIRE_NAMESPACE, name: 'spire-server-0' };

export class DiscoveryError extends Error {
  override name = 'DiscoveryError';
}

interface ServicePort {
  name?: string;
  port: number;
  nodePort?: number;
}

function portOf(svc: KubeObject, portName: string | undefined): ServicePort | undefined {
  const ports = ((svc.spec as { ports?: ServicePort[] } | undefined)?.ports ?? []) as ServicePort[];
  return portName ? ports.find((p) => p.name === portName) : ports[0];
}

async function nodeAddress(client: ClusterClient): Promise<string | undefined> {
  const nodes = await client.list('v1', 'Node');
  for (const type of ['ExternalIP', 'InternalIP']) {
    for (const n of nodes) {
      const a = (
        (n.status as { addresses?: Array<{ type: string; address: string }> } | undefined)?.addresses ?? []
      ).find((x) => x.type === type);
      if (a) return a.address;
    }
  }
  return undefined;
}

export async function serviceAddress(
  client: ClusterClient,
  svc: { namespace: string; name: string; portName?: string },
  o: { timeoutMs?: number; onProgress?: (line: string) => void } = {},
): Promise<string> {
  const where = `${client.context}: Service ${svc.namespace}/${svc.name}`;
  const deadline = Date.now() + (o.timeoutMs ?? 180_000);
  let reported = false;
  for (;;) {
    // An API server that stops answering meanwhile is said, not waited out in silence.
    const s = await retrying(
      () => client.get({ apiVersion: 'v1', kind: 'Service', namespace: svc.namespace, name: svc.name }),
      {
        onRetry: (e) =>
          o.onProgress?.(`retrying to read ${svc.namespace}/${svc.name}: ${e.message.split('\n')[0]}`),
      },
    );
    if (!s) throw new DiscoveryError(`${where} does not exist`);
    const port = portOf(s, svc.portName);
    if (!port) throw new DiscoveryError(`${where} has no port ${svc.portName ?? ''}`.trim());
    const type = (s.spec as { type?: string }).type;
    if (type === 'NodePort') {
      if (!port.nodePort) throw new DiscoveryError(`${where} has no node port yet`);
      const host = await nodeAddress(client);
      if (!host)
        throw new DiscoveryError(
          `${where} is a NodePort, but no node has an ExternalIP or InternalIP address`,
        );
      return `${host}:${port.nodePort}`;
    }
    if (type === 'LoadBalancer') {
      const ingress = (
        s.status as { loadBalancer?: { ingress?: Array<{ ip?: string; hostname?: string }> } } | undefined
      )?.loadBalancer?.ingress?.find((i) => i.ip || i.hostname);
      if (ingress) return `${ingress.ip ?? ingress.hostname}:${port.port}`;
      if (Date.now() > deadline)
        throw new DiscoveryError(
          `${where} has no load balancer address after ${Math.round((o.timeoutMs ?? 180_000) / 1000)} s: does the cluster provision LoadBalancer Services? If not, set the fleet's exposure type to NodePort, or give its address`,
        );
      if (!reported) {
        o.onProgress?.(`waiting for a load balancer address for ${svc.namespace}/${svc.name}`);
        reported = true;
      }
      await new Promise((r) => setTimeout(r, 500));
      continue;
    }
    throw new DiscoveryError(`${where} is of type ${type ?? 'ClusterIP'}: peers cannot reach it`);
  }
}

/**
 * The address a Service has now, without waiting; undefined when it has none
 * (yet): no Service, no such port, no load balancer address. Failing to read
 * it (403, no connection) is an error, not "no address".
 */
export async function currentAddress(
  client: ClusterClient,
  svc: { namespace: string; name: string; portName?: string },
): Promise<string | undefined> {
  try {
    return await serviceAddress(client, svc, { timeoutMs: 0 });
  } catch (e) {
    if (e instanceof DiscoveryError) return undefined;
    throw e;
  }
}
