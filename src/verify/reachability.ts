/**
 * MF101, the check every stage (`check --pre`, `check`, `verify`) runs
 * first: each fleet cluster's API server answers GET /version over verified
 * TLS, within --timeout (the probe `connect` made before any check). It is
 * fatal: a cluster it fails on is named with why it cannot be reached
 * (refused, TLS untrusted, a missing CA file or exec plugin, no answer in
 * time), and every other check's finding about that cluster is `not-run`
 * because of it (catalog.ts).
 */
import type { CheckDef } from './catalog.js';
import { type CheckContext, REACHABILITY, UNREACHABLE_BLOCKING } from './context.js';

export const REACHABILITY_CHECK: CheckDef<CheckContext> = {
  code: REACHABILITY,
  title: 'API servers reachable',
  category: 'kubernetes',
  severity: 'error',
  stage: 'pre',
  fatal: true,
  blocking: UNREACHABLE_BLOCKING,
  description:
    "Every fleet cluster's context answers GET /version over verified TLS within --timeout; checked first in every stage, and a cluster that fails it has its other checks not run.",
  hint: 'kubectl --context <context> version; fix the kubeconfig (--kubeconfig) or the fleet contexts (spec.clusters[].context); see docs/verify.md#mf101',
  async run(ctx) {
    return ctx.fleet.clusters.map((c) => {
      const u = ctx.unreachable.get(c.name);
      return u
        ? {
            status: 'failed' as const,
            cluster: c.name,
            message: `unreachable: ${u.why} (context ${u.context}, ${u.server})`,
            data: { reason: u.reason, detail: u.message },
          }
        : {
            status: 'passed' as const,
            cluster: c.name,
            message: `context ${c.context} answers`,
            ...(ctx.versions.get(c.name) ? { data: { version: ctx.versions.get(c.name) } } : {}),
          };
    });
  },
};
