/**
 * The programs of this machine the lab runs besides its own builds: the node
 * agents make pod networks and containers with iproute2 and util-linux, and
 * with real pods, Istio's sidecar capture runs iptables in each pod's network
 * namespace, helloworld runs on this machine's Python and sleep's image is
 * this machine's curl (node/images.ts). `lab up` checks for them before it
 * starts anything, so that a missing one is named with its package instead
 * of surfacing as a pod that never gets Ready.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';

export interface MachineProgram {
  /** A name looked up on PATH, or an absolute path the lab's images use as it is. */
  name: string;
  /** Debian's package that has it. */
  debian: string;
  why: string;
}

const ALWAYS: MachineProgram[] = [
  { name: 'ip', debian: 'iproute2', why: "the pods' and nodes' network namespaces" },
  { name: 'nsenter', debian: 'util-linux', why: "containers in their pod's namespaces" },
  { name: 'unshare', debian: 'util-linux', why: "each container's mount namespace" },
  { name: 'mount', debian: 'mount', why: "each container's root and volumes" },
];

const REAL_PODS: MachineProgram[] = [
  { name: 'iptables-restore', debian: 'iptables', why: "Istio's sidecar capture in each pod" },
  { name: 'iptables-save', debian: 'iptables', why: "Istio's sidecar capture in each pod" },
  { name: '/usr/bin/python3', debian: 'python3', why: "helloworld, Istio's sample app" },
  { name: '/usr/bin/curl', debian: 'curl', why: "the sleep pods' curl" },
];

/** What a lab with real pods (`real`) or simulated ones needs of this machine. */
export function machinePrograms(real: boolean): MachineProgram[] {
  return real ? [...ALWAYS, ...REAL_PODS] : ALWAYS;
}

const executable = (p: string) => {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

/** Those of `programs` not found: an absolute one where it is named, another in no folder of `path` (PATH). */
export function missingPrograms(
  programs: MachineProgram[],
  path: string | undefined,
  exists: (file: string) => boolean = executable,
): MachineProgram[] {
  const dirs = (path ?? '').split(delimiter).filter(Boolean);
  return programs.filter((p) =>
    isAbsolute(p.name) ? !exists(p.name) : !dirs.some((d) => exists(join(d, p.name))),
  );
}

/** What to say when some are missing: each with what the lab needs it for, and the command that installs them. */
export function missingProgramsMessage(missing: MachineProgram[]): string {
  const packages = [...new Set(missing.map((p) => p.debian))];
  return `the lab needs programs this machine does not have: ${missing
    .map((p) => `${p.name} (${p.why})`)
    .join(', ')}; install them (on Debian or Ubuntu: apt-get install ${packages.join(' ')}) and run it again`;
}
