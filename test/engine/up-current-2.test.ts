/** The engine on the lab: the current profile, 2 clusters (up-suite.ts). */
import { engineSuite } from './up-suite.js';

engineSuite('current', 2);
