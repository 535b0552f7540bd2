/**
 * SPIFFE benchmark: X.509-SVID chain validations per second, and the time to
 * parse and inspect a 3-certificate chain (root → SPIRE intermediate → SVID)
 * from PEM. Prints numbers; asserts nothing.
 *   npm run bench:spiffe
 */
import { performance } from 'node:perf_hooks';
import { BundleSet } from '../src/spiffe/bundle.js';
import { inspectChain, parseCertInput } from '../src/spiffe/inspect.js';
import { validateX509Svid } from '../src/spiffe/svid.js';
import { intermediate, root, svid } from '../test/helpers/pki.js';

const r = await root();
const i = await intermediate(r, 'foo.com');
const l = await svid(i, 'spiffe://foo.com/ns/default/sa/sleep');
const set = new BundleSet([{ trustDomain: 'foo.com', x509Authorities: [r.cert], jwtAuthorities: new Map() }]);
const chain = [l.cert, i.cert];
const pem = `${l.pem}\n${i.pem}\n${r.pem}\n`;

for (let k = 0; k < 200; k++) validateX509Svid(chain, set);
const n = 3000;
let t = performance.now();
for (let k = 0; k < n; k++) if (!validateX509Svid(chain, set).valid) throw new Error('chain should be valid');
const perSec = n / ((performance.now() - t) / 1000);

const runs = 500;
t = performance.now();
for (let k = 0; k < runs; k++) inspectChain(parseCertInput(pem), { bundles: [set.get('foo.com')!] });
const parseMs = (performance.now() - t) / runs;

console.log(`meshfed SPIFFE benchmark (node ${process.version}, ECDSA P-256)`);
console.log(
  `X.509-SVID chain validations (leaf + intermediate → bundle root)  ${perSec.toFixed(0).padStart(8)} /s`,
);
console.log(
  `parse + inspect a 3-certificate PEM chain                          ${parseMs.toFixed(3).padStart(8)} ms`,
);
