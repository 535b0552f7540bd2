/**
 * Phase "cert-manager": cert-manager itself from its release manifest (by
 * version, not re-authored), the cluster's self-signed root CA exposed as
 * ClusterIssuer `selfsigned-ca` (SPIRE's UpstreamAuthority asks it for its
 * intermediate), and Istio's plug-in CA `cacerts` — defined once (the seed
 * defined it in two files). istiod reads cacerts in cert-manager's
 * tls.crt / tls.key / ca.crt form.
 */
import { ISTIO_NAMESPACE } from './namespaces.js';
import type { KubeObject, PhaseOutput, RenderContext } from './types.js';

export const ROOT_ISSUER = 'selfsigned-ca';

export function renderCertManager(ctx: RenderContext): PhaseOutput {
  const { fleet, cluster } = ctx;
  const v = fleet.versions.certManager;
  const key = { algorithm: 'ECDSA', size: 256, rotationPolicy: 'Always' };
  const objects: KubeObject[] = [
    {
      apiVersion: 'cert-manager.io/v1',
      kind: 'Issuer',
      metadata: { name: 'selfsigned', namespace: 'cert-manager' },
      spec: { selfSigned: {} },
    },
    {
      apiVersion: 'cert-manager.io/v1',
      kind: 'Certificate',
      metadata: { name: ROOT_ISSUER, namespace: 'cert-manager' },
      spec: {
        isCA: true,
        commonName: 'certmanager-ca',
        subject: { organizations: ['cert-manager'], organizationalUnits: [cluster.name] },
        duration: fleet.ca.root.duration,
        renewBefore: fleet.ca.root.renewBefore,
        secretName: ROOT_ISSUER,
        privateKey: key,
        issuerRef: { name: 'selfsigned', kind: 'Issuer', group: 'cert-manager.io' },
      },
    },
    {
      apiVersion: 'cert-manager.io/v1',
      kind: 'ClusterIssuer',
      metadata: { name: ROOT_ISSUER },
      spec: { ca: { secretName: ROOT_ISSUER } },
    },
    {
      apiVersion: 'cert-manager.io/v1',
      kind: 'Certificate',
      metadata: { name: 'cacerts', namespace: ISTIO_NAMESPACE },
      spec: {
        isCA: true,
        commonName: `istio-ca.${cluster.name}`,
        subject: { organizations: ['meshfed'] },
        duration: fleet.ca.istio.duration,
        renewBefore: fleet.ca.istio.renewBefore,
        secretName: 'cacerts',
        privateKey: key,
        usages: ['digital signature', 'key encipherment', 'cert sign', 'crl sign'],
        issuerRef: { name: ROOT_ISSUER, kind: 'ClusterIssuer', group: 'cert-manager.io' },
      },
    },
  ];
  return {
    upstream: [
      {
        name: 'cert-manager',
        version: v,
        url: `https://github.com/cert-manager/cert-manager/releases/download/v${v}/cert-manager.yaml`,
      },
    ],
    objects,
  };
}

type IssuerRef = { name?: string; kind?: string };

/**
 * cert-manager objects in the order issuance needs them, in groups each of
 * which can be applied once the one before is Ready: a CA issuer
 * (`spec.ca.secretName`) after the Certificate that writes its secret, a
 * Certificate with (or after) its issuer. Applied all at once instead, the CA
 * issuer fails first ("secret not found") and cert-manager retries it with
 * a back-off that doubles (5 s, 10 s, 20 s …), so the Istio CA and SPIRE's
 * upstream wait on that back-off rather than on the root CA. A ClusterIssuer
 * reads its secret from cert-manager's namespace (its cluster resource
 * namespace). Objects of other kinds come first.
 */
export function issuanceOrder(objects: KubeObject[]): KubeObject[][] {
  const issuerKey = (kind: string, name: string, ns: string | undefined) =>
    kind === 'ClusterIssuer' ? `ClusterIssuer/${name}` : `Issuer/${ns}/${name}`;
  const issuers = new Map<string, KubeObject>();
  const certsBySecret = new Map<string, KubeObject>();
  for (const o of objects) {
    if (o.kind === 'Issuer' || o.kind === 'ClusterIssuer')
      issuers.set(issuerKey(o.kind, o.metadata.name, o.metadata.namespace), o);
    const secretName = (o.spec as { secretName?: string } | undefined)?.secretName;
    if (o.kind === 'Certificate' && secretName) certsBySecret.set(`${o.metadata.namespace}/${secretName}`, o);
  }
  const level = new Map<KubeObject, number>();
  const levelOf = (o: KubeObject, seen: Set<KubeObject>): number => {
    const known = level.get(o);
    if (known !== undefined) return known;
    if (seen.has(o)) return 0; // a cycle: cert-manager reports it; no order helps
    seen.add(o);
    let l = 0;
    if (o.kind === 'Certificate') {
      const ref = (o.spec as { issuerRef?: IssuerRef }).issuerRef ?? {};
      const issuer = issuers.get(issuerKey(ref.kind ?? 'Issuer', ref.name ?? '', o.metadata.namespace));
      if (issuer) l = levelOf(issuer, seen);
    } else if (o.kind === 'Issuer' || o.kind === 'ClusterIssuer') {
      const secret = (o.spec as { ca?: { secretName?: string } } | undefined)?.ca?.secretName;
      const ns = o.kind === 'ClusterIssuer' ? 'cert-manager' : o.metadata.namespace;
      const cert = secret ? certsBySecret.get(`${ns}/${secret}`) : undefined;
      if (cert) l = levelOf(cert, seen) + 1;
    }
    level.set(o, l);
    return l;
  };
  const levels = objects.map((o) => levelOf(o, new Set()));
  return [...new Set(levels)].sort((a, b) => a - b).map((l) => objects.filter((_, i) => levels[i] === l));
}
