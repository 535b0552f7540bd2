/**
 * Component versions per profile.
 *
 * seed: exactly the guide's stack.
 * current: the newest releases confirmed available on 2026-11-24 — SPIRE
 * v1.15.3, spire-controller-manager v0.7.0 and cert-manager v1.21.2 as the
 * newest versions the Go module proxy serves; Istio 1.30.5 from istio.io's
 * 1.30.x release notes; Kubernetes 1.35 as the newest minor that Istio 1.30
 * lists as supported (not yet cross-checked against its support matrix);
 * spiffe-csi-driver 0.2.3, the newest release confirmed from upstream charts
 * (newer tags could not be confirmed from here).
 */
import type { Profile, Versions } from './model.js';

export const PROFILE_VERSIONS: Readonly<Record<Profile, Readonly<Versions>>> = {
  seed: {
    kubernetes: '1.29.4',
    istio: '1.22.1',
    spire: '1.5.1',
    certManager: '1.15.1',
    registrar: 'k8s-workload-registrar',
    registrarVersion: '1.5.1',
    spiffeCsiDriver: '0.2.3',
  },
  current: {
    kubernetes: '1.35.0',
    istio: '1.30.5',
    spire: '1.15.3',
    certManager: '1.21.2',
    registrar: 'spire-controller-manager',
    registrarVersion: '0.7.0',
    spiffeCsiDriver: '0.2.3',
  },
};

/** SPIRE removed the k8s-workload-registrar in 1.6. */
export const LAST_SPIRE_WITH_REGISTRAR = '1.5.99';

/** Compares dotted numeric versions ("1.22.1" < "1.27.0"); a leading "v" is ignored. */
export function compareVersions(a: string, b: string): number {
  const pa = a
    .replace(/^v/, '')
    .split(/[.-]/)
    .map((x) => Number.parseInt(x, 10) || 0);
  const pb = b
    .replace(/^v/, '')
    .split(/[.-]/)
    .map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

export const VERSION_PATTERN = /^v?\d+\.\d+\.\d+$/;

/**
 * The SPIRE release that introduced what meshfed relies on (SPIRE's CHANGELOG;
 * the 1.5.1 lab build confirms the first: its server refuses the key).
 */
export const SPIRE_SINCE = {
  /** `refresh_hint` in server.federation.bundle_endpoint (before: derived from the CA lifetime). */
  bundleEndpointRefreshHint: '1.8.0',
  /** `spire-server localauthority x509 prepare/activate/taint` and `upstreamauthority taint` (forced rotation). */
  forcedRotation: '1.9.0',
} as const;

export function spireHas(version: string, feature: keyof typeof SPIRE_SINCE): boolean {
  return compareVersions(version, SPIRE_SINCE[feature]) >= 0;
}

/**
 * The Kubernetes minors each Istio minor supports (istio.io's supported
 * releases table: 1.22 → 1.27–1.30; 1.30 → 1.32–1.36), inclusive, for the
 * profiles' Istio minors. `check --pre` fails a cluster outside its fleet's
 * Istio range, and warns for an Istio minor not listed here.
 */
export const ISTIO_KUBERNETES_SUPPORT: Readonly<Record<string, readonly [string, string]>> = {
  '1.22': ['1.27', '1.30'],
  '1.30': ['1.32', '1.36'],
};

/** "1.35.0" / "v1.35.0-gke.1" → "1.35". */
export function minorOf(version: string): string {
  const m = /^v?(\d+)\.(\d+)/.exec(version);
  return m ? `${m[1]}.${m[2]}` : version;
}
