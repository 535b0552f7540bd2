/**
 * Types shared by every renderer: the phases, the objects they produce and the
 * inputs that are only known at apply time.
 *
 * Contract: renderers are pure. Same fleet + same inputs → deep-equal output,
 * in a stable order. They never contact a cluster, read a file or the clock.
 */
import type { ClusterSpec, Fleet } from '../fleet/model.js';

/** Phases in apply order. Each phase ends only when everything in it is healthy. */
export const PHASES = ['namespaces', 'cert-manager', 'spire', 'federation', 'istio', 'apps'] as const;
export type PhaseName = (typeof PHASES)[number];

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** A Kubernetes object as it is sent to the API server (plain JSON). */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [field: string]: unknown;
}

/**
 * An upstream install that meshfed references by version instead of re-authoring
 * (cert-manager's release manifest). The engine fetches, caches and checks it.
 */
export interface UpstreamManifest {
  name: string;
  version: string;
  /** Where the release publishes the manifest for this version. */
  url: string;
}

/**
 * Something a renderer needs but that is only known at apply time (a peer's
 * discovered bundle endpoint address). Objects that need it are left out of the
 * output and listed here, never rendered with a placeholder.
 */
export interface PendingInput {
  /** Cluster whose address is missing. */
  cluster: string;
  /** What is missing, in words: "bundle endpoint address". */
  what: string;
  /** kind/namespace/name of each object held back because of it. */
  heldBack: string[];
}

export interface PhaseRender {
  phase: PhaseName;
  /** Objects meshfed applies, in apply order within the phase. */
  objects: KubeObject[];
  /** Upstream installs applied before `objects`. */
  upstream: UpstreamManifest[];
  /**
   * Inputs to upstream generators that are not applied themselves:
   * the IstioOperator handed to `istioctl manifest generate`.
   */
  generatorInputs: KubeObject[];
  pending: PendingInput[];
}

export interface ClusterRender {
  cluster: string;
  context: string;
  phases: PhaseRender[];
}

export interface FleetRender {
  fleet: string;
  profile: Fleet['profile'];
  clusters: ClusterRender[];
}

/** Values known only at apply time, discovered by the engine or given by the user. */
export interface RenderInputs {
  /** cluster name → "host:port" of its SPIRE bundle endpoint as peers reach it. */
  bundleEndpoints?: Record<string, string>;
}

/** What each per-phase renderer receives. */
export interface RenderContext {
  fleet: Fleet;
  cluster: ClusterSpec;
  /** Clusters this cluster federates with, in fleet order. */
  peers: ClusterSpec[];
  inputs: RenderInputs;
}

/** The part of a PhaseRender a phase renderer fills in. */
export type PhaseOutput = Partial<Omit<PhaseRender, 'phase'>>;
