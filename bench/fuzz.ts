/**
 * `npm run fuzz`: mutation fuzzing of the fleet loader and the certs reader
 * (test/helpers/fuzz.ts), in two worker threads. Prints the seed, the cases
 * run, their time and how they ended; lists every crash (an error the
 * reader may not throw) with its input. Options (environment):
 * MESHFED_FUZZ_SEED (default: the time), MESHFED_FUZZ_CASES (per target,
 * default 100000), MESHFED_FUZZ_SECONDS (per target, default 300).
 * Exit 1 when a crash was found.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { certSeeds, type FuzzReport, formatFuzz, fuzzCerts, fuzzFleet } from '../test/helpers/fuzz.js';

interface Job {
  target: 'fleet' | 'certs';
  seed: number;
  cases: number;
  deadlineMs: number;
}

if (isMainThread) {
  const seed = Number(process.env.MESHFED_FUZZ_SEED ?? Date.now() % 2 ** 31);
  const cases = Number(process.env.MESHFED_FUZZ_CASES ?? 100_000);
  const deadlineMs = Number(process.env.MESHFED_FUZZ_SECONDS ?? 300) * 1000;
  console.log(`fuzz: seed ${seed}, up to ${cases} cases per target, at most ${deadlineMs / 1000} s each`);
  const t0 = performance.now();
  const run = (target: Job['target']) =>
    new Promise<FuzzReport>((resolve, reject) => {
      const w = new Worker(new URL(import.meta.url), {
        workerData: { target, seed, cases, deadlineMs } satisfies Job,
      });
      w.once('message', resolve);
      w.once('error', reject);
    });
  const reports = await Promise.all([run('fleet'), run('certs')]);
  let crashes = 0;
  for (const r of reports) {
    console.log(formatFuzz(r));
    for (const c of r.crashes.slice(0, 10))
      console.log(`  crash at case ${c.n}: ${c.error}\n  input: ${JSON.stringify(c.input)}`);
    crashes += r.crashes.length;
  }
  const total = reports.reduce((n, r) => n + r.cases, 0);
  console.log(
    `fuzz: ${total} cases, ${crashes} crashes, ${((performance.now() - t0) / 1000).toFixed(1)} s wall`,
  );
  process.exitCode = crashes ? 1 : 0;
} else {
  const job = workerData as Job;
  const report =
    job.target === 'fleet'
      ? fuzzFleet(job.seed, job.cases, { deadlineMs: job.deadlineMs })
      : fuzzCerts(job.seed, job.cases, await certSeeds(), { deadlineMs: job.deadlineMs });
  parentPort!.postMessage(report);
}
