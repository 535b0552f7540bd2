/** The engine on the lab: the seed profile, 2 clusters (up-suite.ts). */
import { engineSuite } from './up-suite.js';

engineSuite('seed', 2);
