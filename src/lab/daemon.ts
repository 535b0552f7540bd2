/**
 * Long-running lab processes that outlive the command that started them
 * (`meshfed lab up` returns; `meshfed lab down`, another process, ends them).
 * A record names the program, its pid, its start time and its log; before
 * signalling a pid, its command line and start time are checked against the
 * record, so a reused pid is never killed.
 */
import { spawn } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { running, startTime } from './procfs.js';

export interface DaemonRecord {
  /** What it is, for people: "cluster-1 spire-server". */
  name: string;
  pid: number;
  /** The program's path (argv[0]); also what identifies the pid as ours. */
  program: string;
  log: string;
  /** The process's start time (procfs' startTime); with the pid, it names the process for the machine's uptime. */
  start?: string;
}

export interface DaemonOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Starts `program` in its own session, its output appended to `log`; the caller does not wait for it. */
export function startDaemon(
  name: string,
  program: string,
  args: string[],
  log: string,
  o: DaemonOptions = {},
): DaemonRecord {
  const fd = openSync(log, 'a');
  const child = spawn(program, args, {
    detached: true,
    stdio: ['ignore', fd, fd],
    env: o.env ?? process.env,
    ...(o.cwd ? { cwd: o.cwd } : {}),
  });
  if (child.pid === undefined) throw new Error(`${name}: could not start ${program}`);
  child.unref();
  const start = startTime(child.pid);
  return { name, pid: child.pid, program, log, ...(start ? { start } : {}) };
}

function cmdline(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return undefined;
  }
}

/** The process of the record still runs (same pid, same program, same start time, not a zombie). */
export function daemonAlive(r: DaemonRecord): boolean {
  const argv = cmdline(r.pid);
  return (
    !!argv &&
    argv[0] === r.program &&
    running(r.pid) &&
    (r.start === undefined || startTime(r.pid) === r.start)
  );
}

/** TERM, then KILL after `graceMs`; resolves once the process is gone. */
export async function stopDaemon(r: DaemonRecord, graceMs = 5000): Promise<void> {
  if (!daemonAlive(r)) return;
  try {
    process.kill(r.pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (daemonAlive(r)) {
    if (Date.now() > deadline) {
      try {
        process.kill(r.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    if (Date.now() > deadline + 10_000) throw new Error(`${r.name} (pid ${r.pid}) does not exit`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** The last lines of a daemon's log, for error messages. */
export function logTail(r: DaemonRecord, lines = 5): string {
  try {
    return readFileSync(r.log, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
