/**
 * The shared `-f/--file` handling: an explicit file, `-` for stdin, else
 * ./meshfed.yaml when it exists, else the built-in default fleet.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { defaultFleet, type LoadResult, loadFleetText } from '../fleet/load.js';
import type { Profile } from '../fleet/model.js';
import { formatProblem } from '../fleet/problems.js';
import { readInput, readInputFile } from './files.js';
import { type CliIO, UsageError } from './io.js';
import { terminalSafe } from './terminal.js';

export interface FleetSource {
  /** Name used in messages: the path, "<stdin>" or "(defaults)". */
  label: string;
  result: LoadResult;
}

export async function loadFleetArg(
  file: string | undefined,
  io: CliIO,
  profile?: Profile,
): Promise<FleetSource> {
  const opts = profile ? { profile } : {};
  if (file === '-')
    return { label: '<stdin>', result: loadFleetText(await readInput('-', io, 'fleet'), opts) };
  const path = file ? resolve(io.cwd, file) : resolve(io.cwd, 'meshfed.yaml');
  if (!existsSync(path)) {
    if (file)
      throw new UsageError(
        `fleet file ${file} does not exist (run \`meshfed init -o ${file}\` to write one)`,
      );
    return { label: '(defaults)', result: { fleet: defaultFleet(opts), problems: [] } };
  }
  const label = file ?? 'meshfed.yaml';
  return { label, result: loadFleetText(readInputFile(path, label, 'fleet'), opts) };
}

/** Prints problems to stderr; returns true when there was an error (the caller exits 2). */
export function reportProblems(src: FleetSource, io: CliIO): boolean {
  for (const p of src.result.problems) io.stderr.write(`${terminalSafe(formatProblem(src.label, p))}\n`);
  return src.result.fleet === undefined;
}

export function parseProfile(v: string | undefined): Profile | undefined {
  if (v === undefined) return undefined;
  if (v !== 'current' && v !== 'seed') throw new UsageError(`--profile must be current or seed, not "${v}"`);
  return v;
}
