/**
 * What /proc says about the lab's processes: which run from a folder (exact
 * path match, so `.meshfed-lab` never matches `.meshfed-lab-ci`), whether a
 * pid is still the process it was (its start time), and which process
 * listens on an address (so that a readiness check proves it reached *its*
 * process, not whatever answers on the port).
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** The fields of /proc/<pid>/stat from the state letter on (field 3, "R", "S", "Z" …), or undefined when the pid is gone. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Running, as opposed to gone or a zombie (a zombie has closed its files and sockets). */
export function running(pid: number): boolean {
  const f = statFields(pid);
  return !!f && f[0] !== 'Z';
}

/**
 * The process's start time (clock ticks since boot, /proc/<pid>/stat field
 * 22): with the pid, it names one process for the machine's uptime, so a
 * reused pid is never taken for the one recorded.
 */
export function startTime(pid: number): string | undefined {
  return statFields(pid)?.[19];
}

/** The recorded process (pid and start time) still runs. */
export function sameProcessRuns(pid: number, start: string | undefined): boolean {
  return running(pid) && start !== undefined && startTime(pid) === start;
}

/**
 * `text` names the folder `dir` itself or something inside it: an occurrence
 * of `dir` that starts the text or follows a separator (`=`, `:`, `,`, space,
 * quote) and ends the text or is followed by `/` or a separator.
 */
export function namesPathUnder(text: string, dir: string): boolean {
  const d = dir.endsWith('/') ? dir.slice(0, -1) : dir;
  for (let i = text.indexOf(d); i !== -1; i = text.indexOf(d, i + 1)) {
    const before = i === 0 ? '' : text[i - 1]!;
    const after = text[i + d.length] ?? '';
    if ((before === '' || '=:, "\''.includes(before)) && (after === '' || '/=:, "\''.includes(after)))
      return true;
  }
  return false;
}

/** Processes (other than this one) with an argument naming `dir` or a path inside it. */
export function processesUnder(dir: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (argv.some((a) => namesPathUnder(a, dir))) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** An IPv4 address as /proc/net/tcp writes it: its 32 bits in host (little-endian) order, "0100007F" for 127.0.0.1. */
function procNetIPv4(host: string): string {
  return host
    .split('.')
    .map((o) => Number(o).toString(16).padStart(2, '0'))
    .reverse()
    .join('')
    .toUpperCase();
}

const hexPort = (port: number) => port.toString(16).padStart(4, '0').toUpperCase();

type TcpTable = '/proc/net/tcp' | '/proc/net/tcp6';

/** Every TCP socket of this network namespace: its table, local address (as the table writes it), state and inode. */
function tcpSockets(): Array<{ file: TcpTable; local: string; state: string; inode: string }> {
  const rows: Array<{ file: TcpTable; local: string; state: string; inode: string }> = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6'] as const) {
    let table = '';
    try {
      table = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of table.split('\n').slice(1)) {
      // local_address, rem_address, st (0A = LISTEN), …, inode (field 10)
      const f = line.trim().split(/\s+/);
      if (f.length > 9) rows.push({ file, local: f[1]!, state: f[3]!, inode: f[9]! });
    }
  }
  return rows;
}

/**
 * Socket inodes listening on host:port (an IPv4 host): on the address
 * itself or the IPv4 wildcard (/proc/net/tcp), or on the IPv6 wildcard or the
 * IPv4-mapped address (/proc/net/tcp6: a dual-stack listener, as Go's and
 * Node's servers bind by default, serves IPv4 too).
 */
function listeningInodes(host: string, port: number): Set<string> {
  const p = hexPort(port);
  const wanted: Record<TcpTable, Set<string>> = {
    '/proc/net/tcp': new Set([`${procNetIPv4(host)}:${p}`, `${procNetIPv4('0.0.0.0')}:${p}`]),
    // IPv6 words are in host order too: ::ffff:a.b.c.d is 0…0 FFFF0000 <ipv4>.
    '/proc/net/tcp6': new Set([
      `${'0'.repeat(32)}:${p}`,
      `0000000000000000FFFF0000${procNetIPv4(host)}:${p}`,
    ]),
  };
  const out = new Set<string>();
  for (const row of tcpSockets())
    if (row.state === '0A' && wanted[row.file].has(row.local)) out.add(row.inode);
  return out;
}

/**
 * `pid` holds the socket listening on host:port. A TCP
 * connect only proves that *something* listens; this proves it is the
 * process that was started.
 */
export function listensOn(pid: number, host: string, port: number): boolean {
  const inodes = listeningInodes(host, port);
  if (inodes.size === 0) return false;
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m && inodes.has(m[1]!)) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}

/** TCP states as /proc/net/tcp writes them (include/net/tcp_states.h). */
const TCP_STATES: Record<string, string> = {
  '01': 'ESTABLISHED',
  '02': 'SYN_SENT',
  '03': 'SYN_RECV',
  '04': 'FIN_WAIT1',
  '05': 'FIN_WAIT2',
  '06': 'TIME_WAIT',
  '07': 'CLOSE',
  '08': 'CLOSE_WAIT',
  '09': 'LAST_ACK',
  '0A': 'LISTEN',
  '0B': 'CLOSING',
};

/**
 * The states of every TCP socket whose local port is `port`, held by a
 * process or not: a killed server's connections linger in the kernel,
 * closing, after it is gone.
 */
export function portSocketStates(port: number): string[] {
  const p = `:${hexPort(port)}`;
  return tcpSockets()
    .filter((row) => row.local.endsWith(p))
    .map((row) => TCP_STATES[row.state] ?? `state ${row.state}`);
}

/**
 * Every process holding a TCP socket whose local port is `port`, on any
 * address and in any state, with its command line: who took a port.
 */
export function portHolders(port: number): Array<{ pid: number; command: string; state: string }> {
  const states = new Map<string, string>();
  const p = `:${hexPort(port)}`;
  for (const row of tcpSockets())
    if (row.local.endsWith(p)) states.set(row.inode, row.state === '0A' ? 'LISTEN' : `state ${row.state}`);
  const out: Array<{ pid: number; command: string; state: string }> = [];
  if (states.size === 0) return out;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${entry}/fd/${fd}`));
        const state = m ? states.get(m[1]!) : undefined;
        if (state) {
          const command = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim();
          out.push({ pid: Number(entry), command, state });
        }
      } catch {
        // closed or gone meanwhile
      }
    }
  }
  return out;
}
