/** The kill suite, part 2 of 2 (test/helpers/kill-suite.ts): kill points of `meshfed up` on its own lab. */
import { killSuite } from '../helpers/kill-suite.js';

killSuite(2, 2);
