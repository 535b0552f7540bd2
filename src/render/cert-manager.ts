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
