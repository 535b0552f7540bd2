/**
 * One container of a real lab pod, run as a local process that sees the
 * image's paths: its own mount namespace (util-linux `unshare`, private
 * propagation, so nothing it mounts reaches the machine's mount table), a
 * root folder assembled from read-only binds of the machine's system folders,
 * the lab's builds bound at the image's program paths and the pod's volumes at
 * their mount paths, then `chroot` into it. It runs in the pod's network
 * namespace (`nsenter --net`) and in a cgroup shaped like the kubelet's
 * (`…/kubepods/besteffort/pod<uid>/<container id>`), which is how SPIRE's k8s
 * workload attestor finds the pod and container of a process.
 *
 * The mounts live only as long as the processes of the namespace: when the
 * container's last process exits, the kernel drops them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  statSync,
} from 'node:fs';
import { dirname, join, posix } from 'node:path';
import type { Readable } from 'node:stream';

/** The machine's folders every container sees read-only (programs, libraries, CA certificates). */
const SYSTEM_DIRS = ['/bin', '/sbin', '/lib', '/lib64', '/usr', '/etc'];

/** The cgroup v1 hierarchy the lab places containers in (this machine's memory hierarchy is someone else's). */
export const CGROUP_HIERARCHY = '/sys/fs/cgroup/pids';

/** The default PATH of the images the lab knows (their Dockerfiles set none; containerd's default). */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface Bind {
  /** Path on this machine. */
  hostPath: string;
  /** Path inside the container. */
  path: string;
  readOnly: boolean;
}

export interface ContainerSpec {
  /** 64 hex digits, as a container runtime's IDs; the last segment of the cgroup path. */
  id: string;
  /** A folder of the lab's, assembled into the container's root. */
  root: string;
  argv: string[];
  workdir: string;
  env: Array<[string, string]>;
  /** The lab's build of each program, by its path in the image. */
  programs: Record<string, string>;
  /** Volumes and the pod's /etc/hosts, /etc/hostname, /etc/resolv.conf. */
  binds: Bind[];
  /** /run/netns/<name> of the pod (or of its node, for hostNetwork pods). */
  netns: string | undefined;
  /** The cgroup path under CGROUP_HIERARCHY. */
  cgroup: string;
  /** stdout and stderr of the process, appended. */
  logFile: string;
  /** The user and group the process runs as (securityContext runAsUser/runAsGroup); default root. */
  user?: { uid: number; gid: number };
}

/** chroot's option for the container's user (its group the only one), or nothing for root. */
const userspec = (u: { uid: number; gid: number } | undefined) =>
  u ? `--userspec=${u.uid}:${u.gid} --groups=${u.gid} ` : '';

/** A container ID: stable for a pod, container and restart, 64 hex digits like containerd's. */
export function containerId(podUid: string, name: string, restart: number): string {
  return createHash('sha256').update(`${podUid}/${name}/${restart}`).digest('hex');
}

/** The cgroup of a container, below the lab's own top folder (one per lab, so labs never share one). */
export function containerCgroup(labCgroup: string, podUid: string, id: string): string {
  return posix.join(labCgroup, 'kubepods', 'besteffort', `pod${podUid}`, id);
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The shell program run inside the new mount namespace. The root is a tmpfs,
 * so whatever the container writes outside its volumes is gone with it (a
 * container's writable layer); the machine's system folders are overlays
 * on it, read from the machine and written to the tmpfs (so a mount point
 * under /etc is made there, never in the machine's /etc). Then the programs
 * and volumes are bound (parents before children), /proc mounted, and the
 * container's argv exec'd in its working folder after chroot. Pure, for tests.
 */
export function launchScript(
  spec: ContainerSpec,
  isDir: (hostPath: string) => boolean = isDirectory,
): string {
  const r = (p: string) => q(join(spec.root, p));
  const layers = join(dirname(spec.root), 'layers');
  const lines = [
    'set -e',
    `echo $$ > ${q(join(CGROUP_HIERARCHY, spec.cgroup, 'cgroup.procs'))}`,
    `mount -t tmpfs -o mode=755 tmpfs ${q(spec.root)}`,
    `mount -t tmpfs tmpfs ${q(layers)}`,
  ];
  for (const d of SYSTEM_DIRS.filter(existsSync)) {
    const up = join(layers, 'upper', d);
    const work = join(layers, 'work', d);
    lines.push(
      `mkdir -p ${q(up)} ${q(work)} ${r(d)}`,
      `mount -t overlay overlay -o ${q(`lowerdir=${d},upperdir=${up},workdir=${work}`)} ${r(d)}`,
    );
  }
  lines.push(
    `mkdir -p ${['/dev', '/sys', '/proc', '/tmp', '/run', '/var'].map(r).join(' ')}`,
    `ln -s ../run ${r('/var/run')}`,
    `mount --rbind /dev ${r('/dev')}`,
    `mount --rbind -o ro /sys ${r('/sys')}`,
  );
  const binds = [
    ...Object.entries(spec.programs).map(([path, hostPath]) => ({ hostPath, path, readOnly: true })),
    ...spec.binds,
  ].sort((a, b) => depth(a.path) - depth(b.path));
  // Read-only binds become read-only after every bind is made, as runc does:
  // a mount inside a read-only volume (Istio's CRL ConfigMap inside its root
  // certificate's) needs its mount point made in the parent first.
  for (const b of binds) {
    const target = r(b.path);
    lines.push(
      isDir(b.hostPath)
        ? `mkdir -p ${target}`
        : `mkdir -p ${q(dirname(join(spec.root, b.path)))}; [ -e ${target} ] || : > ${target}`,
      `mount --bind ${q(b.hostPath)} ${target}`,
    );
  }
  for (const b of binds) if (b.readOnly) lines.push(`mount -o remount,bind,ro ${r(b.path)}`);
  lines.push(
    `mount -t proc proc ${r('/proc')}`,
    `mkdir -p ${r(spec.workdir)}`,
    // The variables the shell adds itself are not the container's.
    `exec chroot ${userspec(spec.user)}${q(spec.root)} /usr/bin/env -u PWD -u OLDPWD -C ${q(spec.workdir)} -- "$@"`,
  );
  return lines.join('\n');
}

const depth = (p: string) => p.split('/').filter(Boolean).length;

const isDirectory = (p: string) => statSync(p).isDirectory();

/** Starts the container's process; its pid is the program's (nsenter, unshare, sh and chroot exec in turn). */
export function startContainer(spec: ContainerSpec): ChildProcess & { logged: Promise<void> } {
  mkdirSync(spec.root, { recursive: true });
  mkdirSync(join(dirname(spec.root), 'layers'), { recursive: true });
  mkdirSync(join(CGROUP_HIERARCHY, spec.cgroup), { recursive: true });
  mkdirSync(dirname(spec.logFile), { recursive: true });
  const env = Object.fromEntries(spec.env);
  if (!('PATH' in env)) env.PATH = DEFAULT_PATH;
  if (!('HOSTNAME' in env)) env.HOSTNAME = '';
  const unshare = [
    'unshare',
    '--mount',
    '--propagation',
    'private',
    '--',
    '/bin/sh',
    '-c',
    launchScript(spec),
    'sh',
  ];
  const argv = spec.netns ? ['nsenter', `--net=${spec.netns}`, '--', ...unshare] : unshare;
  const child = spawn(argv[0]!, [...argv.slice(1), ...spec.argv], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const log = createWriteStream(spec.logFile, { flags: 'a' });
  const streams = [criLines(child.stdout!, 'stdout', log), criLines(child.stderr!, 'stderr', log)];
  // Resolves once everything the process wrote is in the log file.
  const logged = Promise.all(streams).then(() => new Promise<void>((r) => log.end(r)));
  return Object.assign(child, { logged });
}

/**
 * A container's output in the CRI log format a kubelet's log files have
 * (`<RFC 3339 time> <stream> F <line>`), which `kubectl logs` readers
 * (kwok's among them) parse. Resolves when the stream ends.
 */
function criLines(from: Readable, stream: 'stdout' | 'stderr', to: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    let rest = '';
    from.setEncoding('utf8');
    from.on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop()!;
      for (const line of lines) to.write(`${new Date().toISOString()} ${stream} F ${line}\n`);
    });
    from.on('close', () => {
      // A last line without its newline is a partial one (P), as the CRI format has it.
      if (rest) to.write(`${new Date().toISOString()} ${stream} P ${rest}\n`);
      resolve();
    });
  });
}

/** The lines of a CRI-format log, without their time, stream and tag. */
export function criLogText(text: string): string {
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => l.replace(/^\S+ (stdout|stderr) [FP] /, ''))
    .join('\n');
}

/** The processes in a cgroup and in every cgroup below it. */
export function cgroupProcesses(cgroup: string): number[] {
  const dir = join(CGROUP_HIERARCHY, cgroup);
  if (!existsSync(dir)) return [];
  const own = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  const below = readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .flatMap((e) => cgroupProcesses(posix.join(cgroup, e.name)));
  return [...own, ...below];
}

/** Signals every process of a cgroup tree; returns how many were signalled. */
export function signalCgroup(cgroup: string, signal: NodeJS.Signals): number {
  let n = 0;
  for (const pid of cgroupProcesses(cgroup)) {
    try {
      process.kill(pid, signal);
      n++;
    } catch {
      // Gone already.
    }
  }
  return n;
}

/** Removes a cgroup tree whose processes are gone (children first); true when nothing of it is left. */
export function removeCgroup(cgroup: string): boolean {
  const dir = join(CGROUP_HIERARCHY, cgroup);
  if (!existsSync(dir)) return true;
  for (const e of readdirSync(dir, { withFileTypes: true }))
    if (e.isDirectory()) removeCgroup(posix.join(cgroup, e.name));
  try {
    rmdirSync(dir);
    return true;
  } catch {
    return false;
  }
}

/**
 * The argv that runs `command` inside a running container, as a container
 * runtime's exec does: in the container's cgroup (so SPIRE's k8s attestor
 * sees the process as the container's), its mount and network namespaces,
 * its root and working folder.
 */
export function execArgv(
  c: { pid: number; root: string; workdir: string; cgroup: string; user?: { uid: number; gid: number } },
  command: string[],
): string[] {
  const script = [
    `echo $$ > ${q(join(CGROUP_HIERARCHY, c.cgroup, 'cgroup.procs'))}`,
    `exec nsenter --target ${c.pid} --mount --net -- chroot ${userspec(c.user)}${q(c.root)} /usr/bin/env -C ${q(c.workdir)} -- "$@"`,
  ].join('\n');
  return ['/bin/sh', '-c', script, 'sh', ...command];
}
