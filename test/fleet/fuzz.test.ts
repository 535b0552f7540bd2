/**
 * A short run of the mutation fuzzer (test/helpers/fuzz.ts; `npm run fuzz`
 * runs 100,000+ cases): the fleet loader never throws, the certs reader
 * throws only its typed input errors. The seed is fixed so that a failure
 * here reproduces; MESHFED_FUZZ_SEED picks another.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { certSeeds, formatFuzz, fuzzCerts, fuzzFleet } from '../helpers/fuzz.js';

const SEED = Number(process.env.MESHFED_FUZZ_SEED ?? 19);
const CASES = 2000;

test(`fuzz (seed ${SEED}, ${CASES} cases each): the fleet loader never throws`, (t) => {
  const r = fuzzFleet(SEED, CASES);
  t.diagnostic(formatFuzz(r));
  assert.equal(r.cases, CASES);
  // Both outcomes occur, or the mutations test nothing.
  assert.ok((r.outcomes.ok ?? 0) > 0 && (r.outcomes.problems ?? 0) > 0, JSON.stringify(r.outcomes));
  assert.deepEqual(r.crashes, []);
});

test(`fuzz (seed ${SEED}, ${CASES} cases each): the certs reader throws only typed input errors`, async (t) => {
  const r = fuzzCerts(SEED, CASES, await certSeeds());
  t.diagnostic(formatFuzz(r));
  assert.equal(r.cases, CASES);
  assert.ok((r.outcomes.ok ?? 0) > 0 && (r.outcomes.InputError ?? 0) > 0, JSON.stringify(r.outcomes));
  assert.deepEqual(r.crashes, []);
});
