import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { hostPortProblem } from '../../fleet/address.js';
import { renderFleet } from '../../render/index.js';
import { allPending, fleetFiles, fleetStream } from '../../render/output.js';
import { ensureOutputDir, fsReason, writeOutputFile } from '../files.js';
import { loadFleetArg, parseProfile, reportProblems } from '../fleet-arg.js';
import { type Command, EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError } from '../io.js';

export const renderCommand: Command = {
  name: 'render',
  usage: `Usage: meshfed render [-f FILE|-] [-o DIR|-] [--cluster NAME] [--profile current|seed]
                      [--endpoint CLUSTER=HOST:PORT ...] [--require-complete] [--force]

Writes DIR/<cluster>/NN-<phase>.yaml in apply order and a kustomization.yaml
per cluster (default DIR: out). -o - prints one YAML stream.
Objects that need a peer's SPIRE bundle endpoint address are held back until
it is known: give it with --endpoint, or spec.clusters[].bundleEndpoint.address;
\`meshfed up\` discovers it. --require-complete exits 1 when anything is held back.

Examples:
  meshfed render -o out
  meshfed render --profile seed --require-complete -o out
  meshfed render --cluster cluster-1 --endpoint cluster-2=spire.c2.example.com:8443 -o -`,
  async run(argv, io) {
    const { values } = parseArgs({
      args: argv,
      options: {
        file: { type: 'string', short: 'f' },
        output: { type: 'string', short: 'o', default: 'out' },
        cluster: { type: 'string' },
        profile: { type: 'string' },
        endpoint: { type: 'string', multiple: true, default: [] },
        'require-complete': { type: 'boolean', default: false },
        force: { type: 'boolean', default: false },
      },
    });
    const src = await loadFleetArg(values.file, io, parseProfile(values.profile));
    if (reportProblems(src, io)) return EXIT_USAGE;
    const fleet = src.result.fleet!;
    const bundleEndpoints: Record<string, string> = {};
    for (const e of values.endpoint) {
      const eq = e.indexOf('=');
      if (eq <= 0) throw new UsageError(`--endpoint "${e}" is not CLUSTER=HOST:PORT`);
      const [cluster, address] = [e.slice(0, eq), e.slice(eq + 1)];
      const problem = hostPortProblem(address, { needPort: true });
      if (problem) throw new UsageError(`--endpoint "${e}": ${problem}; give CLUSTER=HOST:PORT`);
      if (!fleet.clusters.some((c) => c.name === cluster))
        throw new UsageError(
          `--endpoint names unknown cluster "${cluster}" (clusters: ${fleet.clusters.map((c) => c.name).join(', ')})`,
        );
      bundleEndpoints[cluster] = address;
    }
    if (values.cluster && !fleet.clusters.some((c) => c.name === values.cluster))
      throw new UsageError(`--cluster names unknown cluster "${values.cluster}"`);
    const full = renderFleet(fleet, { bundleEndpoints });
    const rendered = values.cluster
      ? { ...full, clusters: full.clusters.filter((c) => c.cluster === values.cluster) }
      : full;

    if (values.output === '-') io.stdout.write(fleetStream(rendered));
    else {
      const root = resolve(io.cwd, values.output);
      const label = `-o ${values.output}`;
      ensureOutputDir(root, label);
      let present: string[];
      try {
        present = readdirSync(root);
      } catch (e) {
        throw new UsageError(`cannot write ${label}: ${root}: ${fsReason(e)}; choose another output path`);
      }
      if (present.length > 0 && !values.force) {
        const known = new Set(full.clusters.map((c) => c.cluster));
        const foreign = present.filter((n) => !known.has(n));
        if (foreign.length > 0)
          throw new UsageError(
            `${values.output} holds files meshfed did not render (${foreign.slice(0, 3).join(', ')}); choose another -o or pass --force`,
          );
      }
      const files = fleetFiles(rendered);
      for (const [rel, content] of files) writeOutputFile(join(root, rel), content, label);
      io.stdout.write(
        `rendered ${rendered.clusters.length} clusters (${fleet.profile} profile) into ${values.output}/: ${files.size} files\n`,
      );
    }
    const pending = allPending(rendered);
    for (const p of pending)
      io.stderr.write(
        `held back in ${p.forCluster}/${p.phase}: ${p.heldBack.join(', ')} — needs the ${p.what} of ${p.cluster}; give --endpoint ${p.cluster}=HOST:PORT, set its bundleEndpoint.address, or let \`meshfed up\` discover it\n`,
      );
    return values['require-complete'] && pending.length > 0 ? EXIT_FAILED : EXIT_OK;
  },
};
