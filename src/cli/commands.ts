/**
 * Every meshfed subcommand, in the order `meshfed --help` lists them. A
 * command's module (and everything it imports: the Kubernetes client alone
 * takes about 0.35 s to load) is loaded only when that command runs or shows
 * its usage, so `--help`, `validate` and `render` load only what they use.
 */
import type { Command } from './io.js';

export interface CommandEntry {
  name: string;
  /** One line for `meshfed --help`. */
  summary: string;
  load(): Promise<Command>;
}

export const COMMANDS: CommandEntry[] = [
  {
    name: 'init',
    summary: 'write a commented fleet file with every default spelled out',
    load: async () => (await import('./commands/init.js')).initCommand,
  },
  {
    name: 'validate',
    summary: 'check a fleet file and report every problem with file:line:col',
    load: async () => (await import('./commands/validate.js')).validateCommand,
  },
  {
    name: 'schema',
    summary: 'print the fleet file’s JSON Schema (for editors)',
    load: async () => (await import('./commands/schema.js')).schemaCommand,
  },
  {
    name: 'render',
    summary: 'render every cluster’s manifests, one file per phase, without touching a cluster',
    load: async () => (await import('./commands/render.js')).renderCommand,
  },
  {
    name: 'plan',
    summary: 'show what `up` would create, update (with a diff) and prune, per cluster; writes nothing',
    load: async () => (await import('./commands/engine.js')).planCommand,
  },
  {
    name: 'up',
    summary: 'bring every cluster of the fleet to the whole federated mesh, in phases, in parallel',
    load: async () => (await import('./commands/engine.js')).upCommand,
  },
  {
    name: 'status',
    summary: 'per cluster and phase, the health of what meshfed applied; reads only',
    load: async () => (await import('./commands/engine.js')).statusCommand,
  },
  {
    name: 'down',
    summary: 'remove everything meshfed created in the fleet’s clusters, in reverse order',
    load: async () => (await import('./commands/engine.js')).downCommand,
  },
  {
    name: 'check',
    summary: 'check the clusters before up (--pre) or the control plane after it, with codes and fixes',
    load: async () => (await import('./commands/check.js')).checkCommand,
  },
  {
    name: 'verify',
    summary:
      "run the guide's walk-through on the data plane: traffic, failover, identities, trust chain, rotation",
    load: async () => (await import('./commands/check.js')).verifyCommand,
  },
  {
    name: 'report',
    summary: 'write one HTML file with the check (and verify) results and a picture of the fleet',
    load: async () => (await import('./commands/check.js')).reportCommand,
  },
  {
    name: 'federation',
    summary:
      'per direction holder ← peer: federated bundles status, sync, repair, and a watch that refreshes',
    load: async () => (await import('./commands/federation.js')).federationCommand,
  },
  {
    name: 'rotate',
    summary: "rotate a cluster's root or SPIRE intermediate without an outage, each step verified",
    load: async () => (await import('./commands/rotate.js')).rotateCommand,
  },
  {
    name: 'certs',
    summary: 'show a certificate chain as a tree and judge it as an X.509-SVID',
    load: async () => (await import('./commands/certs.js')).certsCommand,
  },
  {
    name: 'completion',
    summary: 'print a shell completion script (bash, zsh or fish)',
    load: async () => (await import('./commands/completion.js')).completionCommand,
  },
  {
    name: 'lab',
    summary: 'start, inspect and stop a local lab of real Kubernetes control planes with SPIRE',
    load: async () => (await import('./commands/lab.js')).labCommand,
  },
];
