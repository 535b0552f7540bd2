/**
 * Every process's CPU on this machine, by program, from /proc: to say where a
 * run's CPU went when most of it is not the command's own (the lab's API
 * servers, etcds, controllers, pods). A process is named by its program
 * (`comm`), a Node process by its script's file name. What processes that
 * ended in between used is counted for the parent that waited for them, as
 * "<parent> (children)". And the whole machine's, from /proc/stat. Linux
 * only; elsewhere an empty table and zeros.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';

const HZ = 100;

interface Proc {
  name: string;
  /** utime + stime, in clock ticks. */
  own: number;
  /** cutime + cstime: what its waited-for children used. */
  children: number;
}

export type ProcSnapshot = Map<number, Proc & { start: string }>;

function nameOf(pid: number, comm: string): string {
  if (comm !== 'node' && comm !== 'MainThread') return comm;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const script = argv.slice(1).find((a) => /\.[cm]?js$/.test(a));
    return script ? `node ${basename(script)}` : 'node';
  } catch {
    return comm;
  }
}

/** Every process now: its name and CPU ticks so far, keyed by pid (with its start time, so a reused pid is a new process). */
export function snapshotProcs(): ProcSnapshot {
  const out: ProcSnapshot = new Map();
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return out;
  }
  for (const p of pids) {
    const pid = Number(p);
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const open = stat.indexOf('(');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(open + 1, close);
      const f = stat.slice(close + 2).split(' ');
      // Fields after ")": state(0) … utime(11) stime(12) cutime(13) cstime(14) … starttime(19).
      out.set(pid, {
        name: nameOf(pid, comm),
        own: Number(f[11]) + Number(f[12]),
        children: Number(f[13]) + Number(f[14]),
        start: f[19]!,
      });
    } catch {
      // It ended while we looked.
    }
  }
  return out;
}

/** The machine's CPU time so far, busy and in all, in seconds (/proc/stat's first line; zeros elsewhere). */
export function machineCpu(): { busy: number; all: number } {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3]! + f[4]!;
    const all = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: (all - idle) / HZ, all: all / HZ };
  } catch {
    return { busy: 0, all: 0 };
  }
}

/** CPU-seconds by program between two snapshots, largest first. */
export function cpuByProgram(before: ProcSnapshot, after: ProcSnapshot): Array<[string, number]> {
  const sums = new Map<string, number>();
  const add = (name: string, ticks: number) => {
    if (ticks > 0) sums.set(name, (sums.get(name) ?? 0) + ticks);
  };
  for (const [pid, now] of after) {
    const was = before.get(pid);
    const same = was && was.start === now.start;
    add(now.name, now.own - (same ? was.own : 0));
    add(`${now.name} (children)`, now.children - (same ? was.children : 0));
  }
  return [...sums].map(([n, t]): [string, number] => [n, t / HZ]).sort((a, b) => b[1] - a[1]);
}
